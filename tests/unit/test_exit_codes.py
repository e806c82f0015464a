"""Every exit code of skyvault.exitcodes, from `skyvault.cli.main` run for real: on a state
folder of its own, and for backups on the in-process vault of tests/unit/conftest.py (no
emulators); README.md's table lists exactly these codes."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from skyvault import cli, exitcodes, vaultclient
from skyvault.backup import changes
from skyvault.commands import common, points
from tests.unit import test_check as checks

README = Path(__file__).resolve().parents[2] / "README.md"
grs, ticks = checks.grs, checks.ticks  # an in-process GRS vault whose paired region can stop


pytestmark = pytest.mark.usefixtures("state_folder")


def some_files(tmp_path) -> Path:
    data = tmp_path / "data"
    data.mkdir()
    (data / "good.txt").write_text("good\n")
    (data / "bad.txt").write_text("bad\n")
    return data


def test_ok_once_the_backup_is_committed(agent, tmp_path, capsys):
    assert cli.main(["backup", str(some_files(tmp_path)), "--item", "laptop"]) == exitcodes.OK
    assert ": committed" in capsys.readouterr().out


def test_partial_when_the_backup_is_committed_without_a_file_it_could_not_read(agent, tmp_path, monkeypatch,
                                                                              capsys):
    real_open = open

    def failing_open(path, *args, **kwargs):
        if str(path).endswith("bad.txt"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(changes, "open", failing_open, raising=False)  # root reads any file
    assert cli.main(["backup", str(some_files(tmp_path)), "--item", "laptop"]) == exitcodes.PARTIAL
    output = capsys.readouterr()
    assert ": committed" in output.out and "1 files" in output.out and "1 warnings" in output.out
    assert "cannot read" in output.err and "bad.txt" in output.err


def test_failure_when_the_backup_point_fails(agent, tmp_path, monkeypatch, capsys):
    signed = agent.sign

    def wrong_sizes(body):  # every chunk is rejected, so the point fails
        if body["type"] == "chunks":
            body = {**body, "chunks": [{**c, "size": c["size"] + 1} for c in body["chunks"]]}
        return signed(body)

    monkeypatch.setattr(agent, "sign", wrong_sizes)
    assert cli.main(["backup", str(some_files(tmp_path)), "--item", "laptop"]) == exitcodes.FAILURE
    assert ": failed (" in capsys.readouterr().out


def test_failure_when_a_path_to_back_up_does_not_exist(agent, tmp_path, capsys):
    assert cli.main(["backup", str(tmp_path / "nowhere"), "--item", "laptop"]) == exitcodes.FAILURE
    error = capsys.readouterr().err
    assert error.startswith("skyvault: error:") and "nowhere does not exist" in error


@pytest.mark.parametrize("argv", [["backup", "."], ["points"], ["status"], ["restore", "p", "--target", "t"],
                                  ["check"], ["stack", "status"]])
def test_failure_when_the_state_folder_is_not_set_up(argv, capsys):
    assert cli.main(argv) == exitcodes.FAILURE
    assert "does not exist" in capsys.readouterr().err


def test_credentials_when_the_credentials_file_is_missing_or_not_one(tmp_path, capsys):
    (tmp_path / "garbage.json").write_text("not json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something else"}))
    for name in ("missing.json", "garbage.json", "other.json"):
        assert cli.main(["register", str(tmp_path / name)]) == exitcodes.CREDENTIALS
        assert str(tmp_path / name) in capsys.readouterr().err


def test_credentials_when_the_passphrase_is_wrong(vault, state_folder, tmp_path, monkeypatch, capsys):
    """Registered without remembering the keys: a command derives them, and the service's key
    check says they are not the vault's."""
    monkeypatch.setattr(vaultclient, "HttpTransport", lambda creds: vault.transport)
    state_folder.mkdir()
    (state_folder / "agent.json").write_text(json.dumps({"credentials": vault.creds}))
    monkeypatch.setenv("SKYVAULT_PASSPHRASE", "not the passphrase of this vault")
    assert cli.main(["backup", str(some_files(tmp_path)), "--item", "laptop"]) == exitcodes.CREDENTIALS
    assert "wrong passphrase" in capsys.readouterr().err


def test_check_ok_when_every_chunk_is_there(agent, tmp_path, capsys):
    assert cli.main(["backup", str(some_files(tmp_path)), "--item", "laptop"]) == exitcodes.OK
    assert cli.main(["check", "--read-data"]) == exitcodes.OK
    out = capsys.readouterr().out
    assert "chunks of 1 recovery points; read and authenticated" in out and ": 0 problems" in out


def test_problems_when_check_finds_a_chunk_missing(agent, tmp_path, capsys):
    assert cli.main(["backup", str(some_files(tmp_path)), "--item", "laptop"]) == exitcodes.OK
    container = agent.services.primary.container(f"vault-{agent.vault_id}")
    name = next(container.list("chunks/"))
    container.delete(name)
    assert cli.main(["check"]) == exitcodes.PROBLEMS
    error = capsys.readouterr().err
    assert f"problem: chunk {name.rsplit('/', 1)[1]} (primary): missing" in error and ": damaged:" in error


def test_incomplete_when_a_region_does_not_answer_the_check(grs, ticks, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(common, "agent", lambda **_: grs)
    assert cli.main(["backup", str(some_files(tmp_path)), "--item", "laptop"]) == exitcodes.OK
    checks.replicate_all(grs.services, ticks)
    grs.services.secondary.down = True
    assert cli.main(["check"]) == exitcodes.INCOMPLETE
    assert "not checked: the secondary region did not answer" in capsys.readouterr().err


@pytest.mark.parametrize("argv, error", [(["check", "--read-data", "--subset", "0"], "more than 0%"),
                                         (["check", "--read-data", "--subset", "101%"], "at most 100%"),
                                         (["check", "--subset", "10"], "give --read-data too")])
def test_failure_when_check_is_asked_a_subset_that_is_not_one(agent, argv, error, capsys):
    assert cli.main(argv) == exitcodes.FAILURE
    assert error in capsys.readouterr().err


def write_stack(state_folder: Path, pids: dict[str, int]) -> None:
    state_folder.mkdir()
    components = {name: {"pid": pid, "url": f"http://127.0.0.1/{name}"} for name, pid in pids.items()}
    (state_folder / "stack.json").write_text(json.dumps({"components": components}))


def test_stack_degraded_when_a_component_is_not_running(state_folder, capsys):
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()  # reaped: its pid answers no signal
    write_stack(state_folder, {"functions": os.getpid(), "cosmos": ended.pid})
    assert cli.main(["stack", "status"]) == exitcodes.STACK_DEGRADED
    lines = capsys.readouterr().out.splitlines()
    assert any("functions" in line and "running" in line for line in lines)
    assert any("cosmos" in line and "STOPPED" in line for line in lines)


def test_stack_status_ok_when_every_component_runs(state_folder):
    write_stack(state_folder, {"functions": os.getpid()})
    assert cli.main(["stack", "status"]) == exitcodes.OK


def test_interrupted_by_ctrl_c(monkeypatch, capsys):
    def interrupted(args):
        raise KeyboardInterrupt

    monkeypatch.setattr(points, "run", interrupted)
    assert cli.main(["points"]) == exitcodes.INTERRUPTED
    assert "interrupted" in capsys.readouterr().err


def test_the_readme_lists_exactly_these_codes():
    using_it = README.read_text().split("## Using it", 1)[1].split("\n## ", 1)[0]
    documented = {name: int(code) for code, name in re.findall(r"^\| (\d+) \| `(\w+)` \|", using_it, re.M)}
    defined = {name: value for name, value in vars(exitcodes).items() if name.isupper()}
    assert documented == defined


def test_partial_when_a_restore_could_not_write_some_files(agent, state_folder, tmp_path, capsys):
    """A chunk of one file fails authentication: that file is listed and left out, the other restored."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "bad.bin").write_bytes(os.urandom(3 << 20))  # chunks of its own, and one it shares at its end
    (data / "good.bin").write_bytes(os.urandom(1 << 20))
    assert cli.main(["backup", str(data), "--item", "laptop"]) == exitcodes.OK
    point = re.search(r"recovery point (\S+) ", capsys.readouterr().out).group(1)
    cache = common.cache()
    chunks = {name: [e[0] for e in cache.previous_file(agent.vault_id, "laptop", f"data/{name}").extents]
              for name in ("bad.bin", "good.bin")}
    cache.close()
    victim = chunks["bad.bin"][0]
    assert victim not in chunks["good.bin"]
    container = agent.services.primary.container(f"vault-{agent.vault_id}")
    envelope = bytearray(container.read(f"chunks/{victim[:2]}/{victim}"))
    envelope[-1] ^= 0xFF
    container.put(f"chunks/{victim[:2]}/{victim}", bytes(envelope), overwrite=True)
    target = tmp_path / "restored"
    assert cli.main(["restore", point, "--target", str(target)]) == exitcodes.PARTIAL
    output = capsys.readouterr()
    assert "1 entries could not be restored" in output.err and "data/bad.bin" in output.err
    assert "1 files" in output.out
    assert [p.name for p in (target / "data").iterdir()] == ["good.bin"]
    assert (target / "data" / "good.bin").read_bytes() == (data / "good.bin").read_bytes()
