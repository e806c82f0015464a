"""`--json` of the operator's and the agent's commands (skyvault/commands/output.py, docs/design.md
"JSON output") through skyvault.cli.main on the in-memory service: stdout is JSON objects only,
one a line, each with a "type", snake_case top-level fields, one "summary" last naming the
command, and the fields each command documents; the same commands in text mode still say what
they did. And every leaf command's --help has examples that parse as that command."""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import subprocess
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest

from shared import bootstrap
from shared.domain import RecoveryPoint, container_name
from shared.service import protection, retention_sweep, singleton, vaults
from skyvault import cli, exitcodes, home, vaultclient
from skyvault.commands import bill as bill_command
from skyvault.commands import common
from skyvault.commands import points as points_command
from skyvault.commands import register as register_command
from skyvault.commands import schedule as schedule_command
from skyvault.commands import status as status_command
from skyvault.commands.common import KEYS_FILE
from skyvault.stack import local
from tests import inprocess

PASSPHRASE = "json commands test passphrase"
VAULT = ["--vault", "files", "--tenant", "contoso"]
TENANT = ["--tenant", "contoso"]
POINT = "20261201T120000Z-0000abcd"
SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
NONE = type(None)


@dataclass
class World:
    services: object
    agent: inprocess.InProcessVault
    tmp: Path

    def vault(self):
        return vaults.find_vault(self.services, "contoso", "files")


@pytest.fixture
def world(tmp_path, monkeypatch):
    """Vault `files` of tenant contoso on the in-memory service, the stack the operator's commands
    reach; this machine registered with it (its keys remembered); one committed point of item
    laptop, a day old, whose reference list is empty."""
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("SKYVAULT_PASSPHRASE", PASSPHRASE)
    home.write_json("stack.json", {"settings": {}})
    services = inprocess.memory_services("json-commands")
    monkeypatch.setattr(bootstrap, "build_services", lambda settings: services)
    vault, ticket = vaults.create_vault(services, "contoso", "files", "LRS")
    agent = inprocess.InProcessVault(ticket.to_doc(), services, PASSPHRASE)
    home.write_json("agent.json", {"credentials": agent.creds})
    home.write_json(KEYS_FILE, {"vaultId": agent.vault_id, "machineId": agent.machine_id, "keys": agent.keys.to_doc()})
    for module in (points_command, status_command, schedule_command, bill_command):
        monkeypatch.setattr(module, "AgentVault", lambda creds: agent)
    monkeypatch.setattr(common, "agent", lambda **_: agent)
    monkeypatch.setattr(register_command, "enrol", functools.partial(
        vaultclient.enrol, transport=inprocess.InProcessTransport(services), clock=services.clock))
    services.index.create_point(RecoveryPoint(
        id=POINT, vault_id=vault.id, item="laptop", state="committed",
        created_at=(services.clock() - timedelta(days=1)).isoformat(), manifest_blob="m", refs_blob="r",
        chunk_count=0))
    services.primary.container(container_name(vault.id)).put("r", b"")
    (tmp_path / "data").mkdir()
    return World(services, agent, tmp_path)


def json_lines(out: str, command: str) -> tuple[list[dict], dict]:
    """The objects of a --json run's stdout, checked against the contract, and its summary."""
    assert out.endswith("\n"), "every object is a whole line"
    objects = [json.loads(line) for line in out.splitlines()]
    for o in objects:
        assert isinstance(o, dict) and isinstance(o.get("type"), str), o
        assert all(SNAKE.match(key) for key in o), f"top-level fields are snake_case: {sorted(o)}"
    summaries = [o for o in objects if o["type"] == "summary"]
    assert len(summaries) == 1 and objects[-1] is summaries[0], "one summary, last"
    assert summaries[0]["command"] == command
    return objects[:-1], summaries[0]


def has_fields(o: dict, schema: dict[str, type | tuple[type, ...]]) -> None:
    for field, kind in schema.items():
        assert field in o, f"{o['type']} has no {field!r}: {o}"
        assert isinstance(o[field], kind), f"{o['type']}.{field} is {type(o[field]).__name__}, not {kind}"


# The fields each command's summary documents (docs/design.md, "JSON output").
SUMMARIES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "vault create": {"vault": dict, "credentials_file": str, "ticket_id": str, "expires_at": str},
    "vault ticket": {"vault_id": str, "vault_name": str, "credentials_file": str, "ticket_id": str,
                     "expires_at": str},
    "vault machines": {"machines": int},
    "vault revoke-machine": {"machine": dict},
    "vault set-redundancy": {"vault": dict},
    "vault soft-delete": {"vault": dict},
    "vault immutability": {"vault": dict},
    "policy create": {"vault_id": str, "vault_name": str, "policy_name": str, "policy": dict},
    "policy set": {"vault_id": str, "vault_name": str, "policy_name": str, "policy": dict},
    "policy show": {"vault_id": str, "vault_name": str, "policies": int},
    "policy assign": {"vault_id": str, "vault_name": str, "item": str, "policy_name": str},
    "retention plan": {"at": str, "items": int, "expiring": int, "soft_deleted": int, "purging": int},
    "retention sweep": {"busy": (str, NONE), "vaults": int, "expired": int, "purged": int},
    "delete": {"point": dict},
    "undelete": {"point": dict},
    "protection stop": {"item": str, "protection": str, "deleted_points": list},
    "protection resume": {"item": str, "protection": str},
    "bill": {"statement": dict},
    "usage": {"month": str, "through": str, "usage": list, "total": str, "currency": str, "price_sheet": str},
    "register": {"vault_id": str, "vault_name": str, "tenant_id": str, "machine_id": str, "machine_name": str,
                 "first_machine": bool, "keys_remembered": bool},
    "schedule": {"schedule": dict, "format": str, "installed": bool, "files": list},
    "points": {"points": int},
    "status": {"status": dict},
    "stack": {"action": str},
    "guard keygen": {"key_file": str, "public_key": str},
    "guard enable": {"vault_id": str, "vault_name": str, "guard": dict},
    "guard show": {"vault_id": str, "vault_name": str, "guard": (dict, NONE), "requests": int},
    "guard request": {"request": dict, "request_file": (str, NONE)},
    "guard approve": {"approval": str, "expires_at": str, "vault_id": str, "request": dict},
    "guard disable": {"vault_id": str, "vault_name": str, "guard": NONE},
    "backup": {"point_id": (str, NONE), "item": str, "state": str, "reason": (str, NONE), "files": int, "dirs": int,
               "symlinks": int, "hardlinks": int, "specials": int, "bytes_total": int, "files_read": int,
               "bytes_read": int, "files_unchanged": int, "files_reused": int, "bytes_reused": int,
               "chunks_referenced": int, "chunks_uploaded": int,
               "bytes_uploaded": int, "chunks_deduplicated": int, "chunks_adopted": int, "excluded_files": int,
               "excluded_dirs": int, "excluded_bytes": int, "messages": int, "seconds": (int, float),
               "warnings": int, "dry_run": bool, "tags": list},
    "completion": {"shell": str, "script": str},
}
# The fields of each listing entry.
ENTRIES: dict[str, dict[str, type | tuple[type, ...]]] = {
    "machine": {"machine": dict},
    "policy": {"policy_name": str, "built_in": bool, "policy": dict},
    "item_plan": {"item": str, "policy_name": str, "assigned": bool, "decision": dict},
    "soft_deleted": {"point": dict, "purged_by_next_sweep": bool},
    "vault_sweep": {"vault_sweep": dict},
    "point": {"point": dict},
    "unit": {"name": str, "path": (str, NONE), "text": str},
    "cron_lines": {"path": (str, NONE), "text": str},
    "component": {"name": str, "running": bool, "endpoint": str},
    "request": {"request_id": str, "request": dict},
    "note": {"message": str},
    "progress": {"what": str, "files_done": int, "bytes_done": int, "total_files": (int, NONE),
                 "total_bytes": (int, NONE), "seconds_elapsed": (int, float), "bytes_per_second": int,
                 "seconds_remaining": (int, float, NONE), "current": str},
    "stack": {"home": str, "api_url": str, "in_memory": bool, "started_at": str, "components": dict},
}


def run_json(argv: list[str], command: str, capsys, code: int = exitcodes.OK) -> tuple[list[dict], dict]:
    capsys.readouterr()
    assert cli.main([*argv, "--json"]) == code
    entries, summary = json_lines(capsys.readouterr().out, command)
    has_fields(summary, SUMMARIES[command])
    for entry in entries:
        has_fields(entry, ENTRIES[entry["type"]])
    return entries, summary


def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


# (command, its arguments given the world, commands run first, the entries it lists at least, exit code)
CASES = [
    ("vault create", lambda w: ["vault", "create", "laptops", *TENANT, "--out", str(w.tmp / "l.json")], [], {}, 0),
    ("vault ticket", lambda w: ["vault", "ticket", "files", *TENANT, "--out", str(w.tmp / "t.json")], [], {}, 0),
    ("vault machines", lambda w: ["vault", "machines", "files", *TENANT], [], {"machine": 1}, 0),
    ("vault revoke-machine", lambda w: ["vault", "revoke-machine", "files", w.agent.machine_id, *TENANT], [], {}, 0),
    ("vault set-redundancy", lambda w: ["vault", "set-redundancy", "files", *TENANT, "--redundancy", "LRS"], [], {}, 0),
    ("vault soft-delete", lambda w: ["vault", "soft-delete", "files", *TENANT, "--days", "30"], [], {}, 0),
    ("vault immutability", lambda w: ["vault", "immutability", "files", *TENANT, "--state", "enabled"], [], {}, 0),
    ("policy create", lambda w: ["policy", "create", "short", *VAULT, "--at", "02:00", "--days", "3"], [], {}, 0),
    ("policy show", lambda w: ["policy", "show", *VAULT], [], {"policy": 1}, 0),
    ("policy assign", lambda w: ["policy", "assign", "laptop", "default", *VAULT], [], {}, 0),
    ("retention plan", lambda w: ["retention", "plan", *VAULT], [["delete", POINT, *VAULT]],
     {"item_plan": 1, "soft_deleted": 1}, 0),
    ("retention sweep", lambda w: ["retention", "sweep", *VAULT], [], {"vault_sweep": 1}, 0),
    ("delete", lambda w: ["delete", POINT, *VAULT], [], {}, 0),
    ("undelete", lambda w: ["undelete", POINT, *VAULT], [["delete", POINT, *VAULT]], {}, 0),
    ("protection stop", lambda w: ["protection", "stop", "laptop", *VAULT, "--delete-data"], [], {}, 0),
    ("protection resume", lambda w: ["protection", "resume", "laptop", *VAULT],
     [["protection", "stop", "laptop", *VAULT]], {}, 0),
    ("bill", lambda w: ["bill"], [], {}, 0),
    ("usage", lambda w: ["usage", *TENANT, "--vault", "files"], [], {}, 0),
    ("register", lambda w: ["register", str(w.tmp / "t.json"), "--name", "desktop"],
     [["vault", "ticket", "files", *TENANT, "--out", "{tmp}/t.json"]], {}, 0),
    ("schedule", lambda w: ["schedule", "--item", "laptop", str(w.tmp / "data")], [], {"unit": 2}, 0),
    ("points", lambda w: ["points"], [], {"point": 1}, 0),
    ("status", lambda w: ["status"], [], {}, 0),
    ("stack", lambda w: ["stack", "status"], [], {"component": 2}, exitcodes.STACK_DEGRADED),
    ("backup", lambda w: ["backup", str(w.tmp / "data"), "--item", "laptop", "--tag", "weekly"], [],
     {"progress": 1}, 0),
    ("backup", lambda w: ["backup", "--item", "laptop", "--dry-run"],
     [["backup", "{tmp}/data", "--item", "laptop"]], {"progress": 1}, 0),
    ("completion", lambda w: ["completion", "zsh"], [], {}, 0),
]


def prepare(world: World, command: str, setup: list[list[str]], capsys) -> None:
    if command == "stack":
        home.write_json("stack.json", {"settings": {}, "components": {
            "functions": {"pid": os.getpid(), "url": "http://127.0.0.1:7071"},
            "cosmos": {"pid": dead_pid(), "endpoint": "https://127.0.0.1:8081"}}})
    for argv in setup:
        assert cli.main([word.replace("{tmp}", str(world.tmp)) for word in argv]) == exitcodes.OK
    capsys.readouterr()


@pytest.mark.parametrize("command, argv, setup, listed, code", CASES, ids=[c[0] for c in CASES])
def test_json_output_is_objects_one_a_line_with_the_documented_fields(world, capsys, command, argv, setup, listed,
                                                                      code):
    prepare(world, command, setup, capsys)
    entries, summary = run_json(argv(world), command, capsys, code)
    if command == "stack":
        assert (summary["components"], summary["running"]) == (2, 1)
    for kind, at_least in listed.items():
        assert sum(1 for e in entries if e["type"] == kind) >= at_least, (kind, entries)


@pytest.mark.parametrize("command, argv, setup, listed, code", CASES, ids=[c[0] for c in CASES])
def test_text_output_still_says_what_the_command_did(world, capsys, command, argv, setup, listed, code):
    prepare(world, command, setup, capsys)
    assert cli.main(argv(world)) == code
    out = capsys.readouterr().out
    assert out.strip() and '"type": "summary"' not in out


def test_the_records_are_the_services_documents_and_keep_secrets_out(world, capsys):
    _, created = run_json(["vault", "create", "laptops", *TENANT, "--out", str(world.tmp / "l.json")],
                          "vault create", capsys)
    written = json.loads((world.tmp / "l.json").read_text())
    assert (created["vault"]["name"], created["vault"]["tenantId"], created["ticket_id"]) == (
        "laptops", "contoso", written["ticketId"])
    assert created["credentials_file"] == str(world.tmp / "l.json")
    assert "kdf" not in created["vault"] and "tickets" not in created["vault"]
    assert written["ticketSecret"] not in json.dumps(created), "the ticket's secret stays in its file"

    [point], summary = run_json(["points"], "points", capsys)
    assert point["point"] == world.agent.points()[0].to_doc() and summary["points"] == 1
    _, status = run_json(["status"], "status", capsys)
    assert status["status"] == world.agent.status().to_doc()
    _, deleted = run_json(["delete", POINT, *VAULT], "delete", capsys)
    assert (deleted["point"]["id"], deleted["point"]["deletedAt"] is not None) == (POINT, True)
    [machine], _ = run_json(["vault", "machines", "files", *TENANT], "vault machines", capsys)
    assert (machine["machine"]["id"], machine["machine"]["revokedAt"]) == (world.agent.machine_id, None)

    _, registered = run_json(["register", str(world.tmp / "l.json")], "register", capsys)
    assert (registered["vault_name"], registered["first_machine"], registered["keys_remembered"]) == (
        "laptops", True, True)
    creds = home.agent_state()["credentials"]
    assert creds["machineKey"] not in json.dumps(registered), "this machine's private key stays in its state"


def test_show_lists_each_policy_and_set_says_what_it_replaced(world, capsys, tmp_path):
    run_json(["policy", "create", "short", *VAULT, "--at", "02:00", "--days", "3"], "policy create", capsys)
    entries, summary = run_json(["policy", "show", *VAULT], "policy show", capsys)
    assert {(e["policy_name"], e["built_in"]) for e in entries} == {("default", True), ("short", False)}
    assert summary["policies"] == 2
    [one], _ = run_json(["policy", "show", "short", *VAULT], "policy show", capsys)
    assert one["policy"]["retention"] == {"daily": {"days": 3}}
    doc = tmp_path / "longer.json"
    doc.write_text(json.dumps({"v": 1, "schedule": {"frequency": "daily", "times": ["03:00"]},
                               "retention": {"daily": {"days": 9}}}))
    entries, replaced = run_json(["policy", "set", "short", *VAULT, "--file", str(doc)], "policy set", capsys)
    assert entries == [] and replaced["policy"]["retention"] == {"daily": {"days": 9}}


def test_the_sweep_and_the_plan_report_each_vault_and_point(world, capsys, monkeypatch):
    run_json(["delete", POINT, *VAULT], "delete", capsys)
    later = world.services.clock() + timedelta(days=15)
    monkeypatch.setattr(world.services, "clock", lambda: later)
    [plan, deleted], summary = run_json(["retention", "plan", *VAULT], "retention plan", capsys)
    assert (plan["item"], plan["policy_name"], plan["assigned"]) == ("laptop", "default", False)
    assert (deleted["point"]["id"], deleted["purged_by_next_sweep"], summary["purging"]) == (POINT, True, 1)
    [swept], summary = run_json(["retention", "sweep", *VAULT], "retention sweep", capsys)
    assert swept["vault_sweep"]["purged"] == [POINT]
    assert (summary["busy"], summary["vaults"], summary["purged"]) == (None, 1, 1)
    locks = world.services.primary.container(retention_sweep.LOCKS_CONTAINER)
    with singleton.hold(locks, retention_sweep.LOCK_NAME):
        entries, summary = run_json(["retention", "sweep"], "retention sweep", capsys, exitcodes.BUSY)
    assert entries == [] and "another" in summary["busy"] and summary["vaults"] == 0


def test_stack_up_gives_its_endpoints_not_its_settings(world, capsys, monkeypatch):
    state = {"startedAt": "2026-12-02T12:00:00+00:00", "apiUrl": "http://127.0.0.1:7071", "inMemory": True,
             "settings": {"CosmosDbKey": "the emulator's key"},
             "components": {"cosmos": {"pid": 11, "endpoint": "https://127.0.0.1:8081"},
                            "functions": {"pid": 12, "url": "http://127.0.0.1:7071"}}}
    monkeypatch.setattr(local, "up", lambda in_memory: state)
    [up], summary = run_json(["stack", "up", "--in-memory"], "stack", capsys)
    assert up == {"type": "stack", "home": str(home.home()), "api_url": "http://127.0.0.1:7071", "in_memory": True,
                  "started_at": "2026-12-02T12:00:00+00:00",
                  "components": {"cosmos": {"pid": 11, "endpoint": "https://127.0.0.1:8081"},
                                 "functions": {"pid": 12, "endpoint": "http://127.0.0.1:7071"}}}
    assert (summary["action"], summary["components"]) == ("up", 2)


def test_the_guard_flow_in_json(world, capsys, tmp_path, monkeypatch):
    key = tmp_path / "owner.pem"
    entries, made = run_json(["guard", "keygen", "--out", str(key)], "guard keygen", capsys)
    assert [e["type"] for e in entries] == ["note"] and made["key_file"] == str(key)
    _, enabled = run_json(["guard", "enable", *VAULT, "--owner", "Grace", "--public-key", made["public_key"]],
                          "guard enable", capsys)
    assert enabled["guard"]["owner"] == "Grace" and "requests" not in enabled["guard"]
    request_file = tmp_path / "request.json"
    _, requested = run_json(["guard", "request", "disable-guard", *VAULT, "--out", str(request_file)],
                            "guard request", capsys)
    assert json.loads(request_file.read_text()) == requested["request"]
    assert requested["request_file"] == str(request_file)
    [listed], shown = run_json(["guard", "show", *VAULT], "guard show", capsys)
    assert (listed["request_id"], shown["requests"]) == (requested["request"]["request"], 1)
    _, approved = run_json(["guard", "approve", "--key", str(key), "--vault-id", world.vault().id,
                            "--request-file", str(request_file)], "guard approve", capsys)
    assert approved["request"] == requested["request"]
    assert protection.approval_payload(approved["approval"])["expiresAt"] == approved["expires_at"]
    _, disabled = run_json(["guard", "disable", *VAULT, "--approval", approved["approval"]], "guard disable", capsys)
    assert disabled["guard"] is None and world.vault().guard is None


def test_schedule_installs_and_lists_what_it_wrote(world, capsys):
    units = world.tmp / "units"
    entries, summary = run_json(["schedule", "--item", "laptop", str(world.tmp / "data"), "--install",
                                 "--unit-dir", str(units)], "schedule", capsys)
    assert sorted(summary["files"]) == sorted(str(p) for p in units.iterdir())
    assert {e["path"]: e["text"] for e in entries} == {str(p): p.read_text() for p in units.iterdir()}
    assert (summary["installed"], summary["schedule"]["policy"]) == (True, "default")
    cron = world.tmp / "crontab"
    [lines], summary = run_json(["schedule", "--item", "laptop", str(world.tmp / "data"), "--format", "cron",
                                 "--install", "--cron-file", str(cron)], "schedule", capsys)
    assert (lines["type"], lines["text"], summary["files"]) == ("cron_lines", cron.read_text(), [str(cron)])


def test_usage_and_bill_carry_the_statement(world, capsys):
    _, bill = run_json(["bill", *TENANT], "bill", capsys)
    statement = bill["statement"]
    _, usage = run_json(["usage", *TENANT], "usage", capsys)
    assert usage["usage"] == statement["usage"] and usage["through"] == statement["through"]
    assert (usage["month"], usage["total"]) == (statement["invoice"]["month"], statement["invoice"]["total"])


def test_a_failure_in_json_is_an_error_object_with_the_exit_code(world, capsys):
    assert cli.main(["delete", "20261130T000000Z-0000ffff", *VAULT, "--json"]) == exitcodes.FAILURE
    [error] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (error["type"], error["exit_code"]) == ("error", exitcodes.FAILURE)
    assert "20261130T000000Z-0000ffff" in error["message"]


def test_bill_refuses_csv_with_json_before_reading_anything(world, capsys, monkeypatch):
    monkeypatch.setattr(bill_command, "statement", lambda args: pytest.fail("the statement was read"))
    assert cli.main(["bill", "--csv", "--json"]) == exitcodes.FAILURE
    [error] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert error["type"] == "error" and "--csv and --json" in error["message"]


# --help: each leaf command's examples.

def examples(epilog: str | None) -> list[str]:
    """The `skyvault ...` lines after the epilog's "example:" or "examples:" line."""
    lines = (epilog or "").splitlines()
    starts = [i for i, line in enumerate(lines) if line.strip().startswith(("example:", "examples:"))]
    if not starts:
        return []
    return [line.strip() for line in lines[starts[0] + 1:] if line.strip().startswith("skyvault ")]


def command_words(example: str) -> list[str]:
    """The words of the example's `skyvault` command, as the shell splits them: up to a pipe, a
    redirection or the next command (`skyvault check --json | jq ...`)."""
    lexer = shlex.shlex(example, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word and set(word) <= set(lexer.punctuation_chars):
            break
        words.append(word)
    return words


def leaves() -> list[tuple[str, object]]:
    return [(" ".join(path), leaf) for path, leaf in cli._leaves(cli.parser(), [])]


def test_every_leaf_command_has_a_description_and_examples():
    missing = [name for name, leaf in leaves() if not (leaf.description and examples(leaf.epilog))]
    assert missing == [], f"leaf commands without a description or an example in their epilog: {missing}"


@pytest.mark.parametrize("name, leaf", leaves(), ids=[name for name, _ in leaves()])
def test_each_example_parses_as_its_own_command(name, leaf):
    for example in examples(leaf.epilog):
        words = command_words(example)
        try:
            args = cli.parser().parse_args(words[1:])
        except SystemExit:
            pytest.fail(f"the example of `skyvault {name}` does not parse: {example}")
        assert args.command_path == name, f"the example of `skyvault {name}` runs `skyvault {args.command_path}`"
