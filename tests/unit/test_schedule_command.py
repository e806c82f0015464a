"""`skyvault schedule` through skyvault.cli.main on the in-process service: each item's policy
schedule (GET items/{item}/schedule, shared/messages.py ItemSchedule) as a systemd timer and
service or as crontab lines, printed or installed, with paths quoted as systemd and cron read
them; `systemd-analyze` checks the units where this machine has it."""
from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import sys

import pytest

from shared.domain import ItemRecord, Protection
from shared.messages import ItemSchedule
from shared.retention import Schedule
from shared.service import policies
from skyvault import cli, exitcodes, home
from skyvault.commands import schedule as schedule_command
from skyvault.commands.common import KEYS_FILE
from skyvault.vaultclient import ApiError

BERLIN_TWICE = {"v": 1, "timeZone": "Europe/Berlin", "schedule": {"frequency": "daily", "times": ["02:00", "14:30"]},
                "retention": {"daily": {"days": 30}}}
MONDAY_AND_FRIDAY = {"v": 1, "schedule": {"frequency": "weekly", "times": ["06:05"],
                                          "weekdays": ["monday", "friday"]},
                     "retention": {"weekly": {"weekday": "friday", "weeks": 12}}}
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="no systemd-analyze on this machine")


@pytest.fixture
def registered(vault, state_folder, monkeypatch):
    """This machine is registered to the in-process vault, its keys remembered, as `register` leaves it."""
    home.write_json("agent.json", {"credentials": vault.creds})
    home.write_json(KEYS_FILE, {"vaultId": vault.vault_id, "machineId": vault.machine_id, "keys": vault.keys.to_doc()})
    monkeypatch.setattr(schedule_command, "AgentVault", lambda creds: vault)
    return vault


@pytest.fixture
def data(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    return folder


def assign(vault, item: str, name: str, doc: dict) -> None:
    record = vault.services.index.get_vault(vault.tenant_id, vault.vault_id)
    policies.create_policy(vault.services, record, name, doc)
    policies.assign_policy(vault.services, record, item, name)


def lines_of(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(key + "=")]


def printed_units(out: str) -> dict[str, str]:
    """The units `schedule` printed, by the name in the comment line before each."""
    units: dict[str, list[str]] = {}
    for line in out.splitlines():
        if line.startswith("# skyvault-backup-"):
            current = units.setdefault(line[2:], [])
        else:
            current.append(line)
    return {name: "\n".join(lines).strip("\n") + "\n" for name, lines in units.items()}


def agent_words() -> list[str]:
    return [sys.executable, "-m", "skyvault.cli"]


def test_a_daily_policy_in_berlin_is_a_timer_with_each_time_in_its_zone(registered, data, state_folder, capsys):
    assign(registered, "laptop", "office", BERLIN_TWICE)
    assert cli.main(["schedule", "--item", "laptop", str(data)]) == exitcodes.OK
    units = printed_units(capsys.readouterr().out)
    assert sorted(units) == ["skyvault-backup-laptop.service", "skyvault-backup-laptop.timer"]
    timer, service = units["skyvault-backup-laptop.timer"], units["skyvault-backup-laptop.service"]
    assert lines_of(timer, "OnCalendar") == ["*-*-* 02:00:00 Europe/Berlin", "*-*-* 14:30:00 Europe/Berlin"]
    assert lines_of(timer, "Persistent") == ["true"] and lines_of(timer, "RandomizedDelaySec") == ["5min"]
    assert "[Install]\nWantedBy=timers.target\n" in timer and "policy office" in timer
    assert lines_of(service, "Type") == ["oneshot"]
    assert lines_of(service, "Environment") == [f"SKYVAULT_HOME={state_folder}"]
    assert lines_of(service, "ExecStart") == [shlex.join([*agent_words(), "backup", str(data), "--item", "laptop"])]


def test_a_weekly_policy_runs_on_its_weekdays_only(registered, data, capsys):
    assign(registered, "db", "weekly", MONDAY_AND_FRIDAY)
    assert cli.main(["schedule", "--item", "db", str(data)]) == exitcodes.OK
    timer = printed_units(capsys.readouterr().out)["skyvault-backup-db.timer"]
    assert lines_of(timer, "OnCalendar") == ["Mon,Fri *-*-* 06:05:00 UTC"]


def test_an_item_without_an_assignment_follows_the_default_policy(registered, data, capsys):
    assert cli.main(["schedule", "--item", "new-item", str(data)]) == exitcodes.OK
    out = capsys.readouterr()
    assert lines_of(printed_units(out.out)["skyvault-backup-new-item.timer"], "OnCalendar") == ["*-*-* 21:00:00 UTC"]
    assert "policy default" in out.out and out.err == ""


def test_cron_lines_set_the_zone_and_say_cron_has_no_catch_up(registered, data, state_folder, capsys):
    assign(registered, "laptop", "office", BERLIN_TWICE)
    assign(registered, "db", "weekly", MONDAY_AND_FRIDAY)
    assert cli.main(["schedule", "--item", "laptop", "--format", "cron", str(data)]) == exitcodes.OK
    lines = capsys.readouterr().out.splitlines()
    job = (f"cd / && SKYVAULT_HOME={state_folder} {shlex.join(agent_words())} backup {data} --item laptop "
           f">> {state_folder / 'backup-laptop.log'} 2>&1")
    assert lines[0] == "# BEGIN skyvault-backup-laptop" and lines[-1] == "# END skyvault-backup-laptop"
    assert lines[lines.index("CRON_TZ=Europe/Berlin") + 1:-1] == [f"0 2 * * * {job}", f"30 14 * * * {job}"]
    assert any(line.startswith("# cron has no catch-up") for line in lines)
    assert cli.main(["schedule", "--item", "db", "--format", "cron", str(data)]) == exitcodes.OK
    lines = capsys.readouterr().out.splitlines()
    assert "CRON_TZ=UTC" in lines and lines[-2].startswith("5 6 * * 1,5 cd / && ")


def test_install_writes_both_units_and_says_how_to_start_the_timer(registered, data, tmp_path, capsys):
    assign(registered, "laptop", "office", BERLIN_TWICE)
    assert cli.main(["schedule", "--item", "laptop", str(data)]) == exitcodes.OK
    printed = printed_units(capsys.readouterr().out)
    units = tmp_path / "units"
    assert cli.main(["schedule", "--item", "laptop", str(data), "--install", "--unit-dir", str(units)]) == exitcodes.OK
    out = capsys.readouterr().out
    assert {p.name: p.read_text() for p in units.iterdir()} == printed
    assert ("systemctl --user daemon-reload && systemctl --user enable --now skyvault-backup-laptop.timer"
            in out)


def test_install_writes_the_user_unit_folder_by_default(registered, data, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cli.main(["schedule", "--item", "laptop", str(data), "--install"]) == exitcodes.OK
    assert sorted(p.name for p in (tmp_path / "config" / "systemd" / "user").iterdir()) == [
        "skyvault-backup-laptop.service", "skyvault-backup-laptop.timer"]


def test_cron_install_adds_the_item_and_replaces_its_earlier_lines(registered, data, tmp_path, capsys):
    crontab = tmp_path / "crontab"
    crontab.write_text("MAILTO=me\n15 3 * * * /usr/bin/true")
    install = ["schedule", "--item", "laptop", "--format", "cron", str(data), "--install", "--cron-file", str(crontab)]
    assert cli.main(install) == exitcodes.OK
    assign(registered, "laptop", "office", BERLIN_TWICE)
    assert cli.main(install) == exitcodes.OK
    assert "crontab " + str(crontab) in capsys.readouterr().out
    text = crontab.read_text()
    assert text.startswith("MAILTO=me\n15 3 * * * /usr/bin/true\n# BEGIN skyvault-backup-laptop\n")
    assert text.count("# BEGIN skyvault-backup-laptop") == 1 and text.endswith("# END skyvault-backup-laptop\n")
    assert "CRON_TZ=Europe/Berlin" in text and "CRON_TZ=UTC" not in text


def test_a_path_with_spaces_and_unit_syntax_is_quoted_for_systemd(registered, tmp_path, capsys):
    awkward = tmp_path / 'my docs 50% $HOME it"s back\\slash ;'
    awkward.mkdir()
    assert cli.main(["schedule", "--item", "laptop", str(awkward)]) == exitcodes.OK
    service = printed_units(capsys.readouterr().out)["skyvault-backup-laptop.service"]
    quoted = str(awkward).replace("\\", "\\\\").replace('"', '\\"').replace("%", "%%").replace("$", "$$")
    assert lines_of(service, "ExecStart") == [f'{shlex.join(agent_words())} backup "{quoted}" --item laptop']


def cron_command(line: str) -> str:
    """What cron hands the shell of a crontab line's command: a `\\%` is a `%`, and the first other
    `%` ends the command (vixie cron and cronie, do_command)."""
    command, escaped = [], False
    for ch in line:
        if escaped:
            if ch == "%":
                command[-1] = "%"
            else:
                command.append(ch)
            escaped = False
        elif ch == "%":
            break
        else:
            command.append(ch)
            escaped = ch == "\\"
    return "".join(command)


@pytest.mark.parametrize("name", ["my docs", "50% done", "back\\%slash", "it's", "$HOME `x`", "%", "a\\"])
def test_a_path_is_one_word_of_the_cron_command_as_the_shell_reads_it(registered, tmp_path, name, capsys):
    (tmp_path / name).mkdir()
    assert cli.main(["schedule", "--item", "laptop", "--format", "cron", str(tmp_path / name)]) == exitcodes.OK
    job = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("0 21 * * * "))
    words = shlex.split(cron_command(job.removeprefix("0 21 * * * ")))
    assert words[words.index("backup") + 1] == str(tmp_path / name)


@needs_systemd_analyze
@pytest.mark.parametrize("doc", [BERLIN_TWICE, MONDAY_AND_FRIDAY])
def test_systemd_reads_the_calendar_specs(registered, data, doc, capsys):
    assign(registered, "laptop", "p", doc)
    assert cli.main(["schedule", "--item", "laptop", str(data)]) == exitcodes.OK
    specs = lines_of(printed_units(capsys.readouterr().out)["skyvault-backup-laptop.timer"], "OnCalendar")
    checked = subprocess.run([SYSTEMD_ANALYZE, "calendar", *specs], capture_output=True, text=True)
    assert checked.returncode == 0, checked.stderr
    assert [line.split(":", 1)[1].strip() for line in checked.stdout.splitlines()
            if "Normalized form" in line] == specs


@needs_systemd_analyze
def test_systemd_verifies_the_installed_units_of_an_awkward_path(registered, tmp_path, capsys):
    awkward = tmp_path / 'my docs 50% $HOME it"s back\\slash ;'
    awkward.mkdir()
    assign(registered, "laptop", "office", BERLIN_TWICE)
    units = tmp_path / "units"
    assert cli.main(["schedule", "--item", "laptop", str(awkward), "--install", "--unit-dir", str(units)]) == 0
    checked = subprocess.run([SYSTEMD_ANALYZE, "verify", *(str(p) for p in sorted(units.iterdir()))],
                             capture_output=True, text=True)
    assert (checked.returncode, checked.stdout, checked.stderr) == (0, "", "")


def test_the_units_command_runs_the_agent_from_any_folder():
    ran = subprocess.run([*agent_words(), "schedule", "--help"], cwd="/", capture_output=True, text=True)
    assert ran.returncode == 0 and "--install" in ran.stdout


def test_the_units_run_the_skyvault_script_this_command_runs_as(tmp_path, monkeypatch):
    script = tmp_path / "bin" / "skyvault"
    script.parent.mkdir()
    script.write_text("#!/bin/sh\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["bin/skyvault", "schedule"])
    assert schedule_command.agent_command() == [str(script)]


def test_a_scheduled_backup_without_remembered_keys_is_warned_of(registered, data, state_folder, capsys):
    (state_folder / KEYS_FILE).unlink()
    assert cli.main(["schedule", "--item", "laptop", str(data)]) == exitcodes.OK
    assert "cannot ask for the passphrase" in capsys.readouterr().err


@pytest.mark.parametrize("argv, words", [
    (["--item", "bad/name"], "item 'bad/name' must be 1-63 letters"),
    (["--item", "laptop", "--format", "cron", "--install"], "give --cron-file FILE"),
    (["--item", "laptop", "--unit-dir", "units"], "give --install too"),
    (["--item", "laptop", "--format", "cron", "--install", "--unit-dir", "units"], "not for --format cron"),
    (["--item", "laptop", "--install", "--cron-file", "crontab"], "give --format cron"),
])
def test_a_bad_request_is_a_failure_naming_it_and_writes_nothing(registered, data, tmp_path, monkeypatch, capsys,
                                                                 argv, words):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    assert cli.main(["schedule", *argv, str(data)]) == exitcodes.FAILURE
    assert words in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "home"]


def test_a_path_that_does_not_exist_is_a_failure(registered, tmp_path, capsys):
    assert cli.main(["schedule", "--item", "laptop", str(tmp_path / "nowhere")]) == exitcodes.FAILURE
    assert "nowhere does not exist" in capsys.readouterr().err


def test_an_item_whose_protection_is_stopped_gets_no_schedule(registered, data, capsys):
    registered.services.index.put_item(ItemRecord(id="laptop", vault_id=registered.vault_id, policy="default",
                                                  protection=Protection.STOPPED))
    assert cli.main(["schedule", "--item", "laptop", str(data)]) == exitcodes.FAILURE
    assert "protection is stopped" in capsys.readouterr().err


def test_an_unregistered_machine_is_told_to_register(state_folder, data, capsys):
    assert cli.main(["schedule", "--item", "laptop", str(data)]) == exitcodes.FAILURE
    assert "skyvault register" in capsys.readouterr().err


def test_the_api_answers_an_items_schedule_and_refuses_a_bad_item(vault):
    assign(vault, "laptop", "office", BERLIN_TWICE)
    assert vault.item_schedule("laptop") == ItemSchedule(
        item="laptop", policy="office", schedule=Schedule("daily", ("02:00", "14:30")), time_zone="Europe/Berlin")
    assert vault.item_schedule("other").policy == "default"
    with pytest.raises(ApiError) as refused:
        vault.api("GET", "items/-laptop/schedule")
    assert refused.value.status == 400 and "must be 1-63 letters" in str(refused.value)


def test_an_answer_for_another_item_is_refused(vault, monkeypatch):
    monkeypatch.setattr(vault, "api", lambda *a, **k: {
        "item": "other", "policy": "default", "schedule": {"frequency": "daily", "times": ["21:00"]},
        "timeZone": "UTC"})
    with pytest.raises(ApiError, match="schedule of item other"):
        vault.item_schedule("laptop")


def test_a_malformed_schedule_answer_is_not_read(vault, monkeypatch):
    monkeypatch.setattr(vault, "api", lambda *a, **k: json.loads(
        '{"item": "laptop", "policy": "default", "schedule": {"frequency": "hourly", "times": ["21:00"]},'
        ' "timeZone": "UTC"}'))
    with pytest.raises(ApiError, match="not one this agent reads.*'schedule.frequency' is 'hourly'"):
        vault.item_schedule("laptop")



def test_without_paths_the_timer_backs_up_what_the_item_remembers(registered, data, capsys):
    from skyvault import items
    from skyvault.backup.exclude import ExclusionRules

    assert cli.main(["schedule", "--item", "laptop"]) == exitcodes.FAILURE
    assert "item 'laptop' has no saved paths on this machine" in capsys.readouterr().err
    items.save(items.ItemConfig("laptop", (str(data),), ExclusionRules(patterns=("*.tmp",))))
    assert cli.main(["schedule", "--item", "laptop"]) == exitcodes.OK
    service = capsys.readouterr().out.split("# skyvault-backup-laptop.service\n")[1]
    exec_start = next(line for line in service.splitlines() if line.startswith("ExecStart="))
    words = shlex.split(exec_start.removeprefix("ExecStart="))
    assert words[-3:] == ["backup", "--item", "laptop"]  # no path: the backup reads the item's configuration
