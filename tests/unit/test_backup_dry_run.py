"""`backup --dry-run` on the in-process vault: nothing written anywhere (service, blobs, cache,
item configuration), and the figures a real backup then makes; and the backup command's
--json summary and progress."""
from __future__ import annotations

import json
import os
import sqlite3

import pytest

from shared.domain import container_name
from skyvault import cli, exitcodes
from skyvault.backup import Backup
from skyvault.backup.exclude import ExclusionRules
from skyvault.commands import backup as backup_command
from skyvault.commands import common

FIGURES = ("files", "dirs", "symlinks", "hardlinks", "specials", "bytes_total", "files_read", "bytes_read",
           "files_unchanged", "chunks_referenced", "chunks_uploaded", "bytes_uploaded", "chunks_deduplicated",
           "excluded_files", "excluded_dirs", "excluded_bytes")


pytestmark = pytest.mark.usefixtures("state_folder")


@pytest.fixture
def calls(vault, monkeypatch) -> list[tuple[str, str]]:
    """Every request the agent makes to the service from now on."""
    made: list[tuple[str, str]] = []
    call = vault.transport.call
    monkeypatch.setattr(vault.transport, "call", lambda method, path, *a, **kw: made.append((method, path))
                        or call(method, path, *a, **kw))
    return made


def make_tree(root):
    (root / "sub").mkdir(parents=True)
    for i in range(3):
        (root / f"part{i}.bin").write_bytes(os.urandom(600_000))
    (root / "sub" / "small.txt").write_text("small\n")
    (root / "sub" / "skip.tmp").write_bytes(os.urandom(1000))
    (root / "link").symlink_to("part0.bin")
    return root


def vault_state(vault) -> dict:
    """What the service holds of the vault: every blob of every region, its points and jobs."""
    name = container_name(vault.vault_id)
    index = vault.services.index
    return {"blobs": {region: sorted(account.container(name).list(""))
                      for region, account in vault.services.regions().items()},
            "points": index.list_points(vault.vault_id),
            "jobs": [index.list_jobs(vault.vault_id, "backup", status) for status in ("running", "done")]}


def cache_state(path) -> tuple:
    """The cache's rows, and the bytes of its database and write-ahead log."""
    db = sqlite3.connect(path)  # not the last connection: the fixture's stays open, so no checkpoint
    try:
        rows = list(db.iterdump())
    finally:
        db.close()
    files = tuple(open(f"{path}{suffix}", "rb").read() if os.path.exists(f"{path}{suffix}") else None
                  for suffix in ("", "-wal"))
    return rows, files


def test_a_dry_run_writes_nothing_and_counts_what_the_backup_then_uploads(vault, cache, tmp_path, calls):
    data = make_tree(tmp_path / "data")
    exclusions = ExclusionRules(patterns=("*.tmp",)).compile()
    first = Backup(vault, cache, "laptop", exclusions=exclusions).run([str(data)])
    assert first.state == "committed"
    (data / "part1.bin").write_bytes(os.urandom(600_000))
    (data / "new.bin").write_bytes(os.urandom(300_000))
    (data / "sub" / "small.txt").unlink()

    before, cached, calls[:] = vault_state(vault), cache_state(cache.path), []
    dry = Backup(vault, cache, "laptop", exclusions=exclusions).run([str(data)], dry_run=True)
    assert calls == [], "a dry run asks the service nothing: no run, no look-up, no message"
    assert vault_state(vault) == before
    assert cache_state(cache.path) == cached
    assert (dry.state, dry.point_id, dry.dry_run, dry.messages) == ("dry run", None, True, 0)

    real = Backup(vault, cache, "laptop", exclusions=exclusions).run([str(data)])
    assert real.state == "committed" and calls, "the real backup's requests are seen"
    assert {f: getattr(dry, f) for f in FIGURES} == {f: getattr(real, f) for f in FIGURES}
    assert (dry.files_read, dry.files_unchanged, dry.excluded_files) == (2, 2, 1)
    assert dry.chunks_uploaded > 0 and dry.bytes_uploaded > 300_000


def test_a_first_dry_run_counts_every_chunk_as_new(vault, cache, tmp_path, calls):
    data = make_tree(tmp_path / "data")
    cached = cache_state(cache.path)
    dry = Backup(vault, cache, "laptop").run([str(data)], dry_run=True)
    assert calls == [] and cache_state(cache.path) == cached and vault_state(vault)["points"] == []
    real = Backup(vault, cache, "laptop").run([str(data)])
    assert {f: getattr(dry, f) for f in FIGURES} == {f: getattr(real, f) for f in FIGURES}


def test_a_dry_run_on_a_machine_without_a_cache_makes_none(agent, tmp_path, state_folder, capsys):
    data = make_tree(tmp_path / "data")
    assert cli.main(["backup", str(data), "--item", "laptop", "--dry-run"]) == exitcodes.OK
    out = capsys.readouterr()
    assert "dry run of item laptop: nothing was written" in out.out
    assert "dry run: the paths and exclusions of item laptop were not saved" in out.err
    assert not (state_folder / "cache.sqlite").exists()
    assert not (state_folder / "item-laptop.json").exists()
    assert agent.points("laptop") == []


def json_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all(isinstance(line, dict) and "type" in line for line in lines)
    return lines


@pytest.mark.parametrize("dry_run", [False, True])
def test_with_json_stdout_is_json_lines_ending_in_the_summary(agent, tmp_path, capsys, dry_run):
    data = make_tree(tmp_path / "data")
    argv = ["backup", str(data), "--item", "laptop", "--exclude", "*.tmp", "--json"]
    assert cli.main(argv + (["--dry-run"] if dry_run else [])) == exitcodes.OK
    out = capsys.readouterr()
    lines = json_lines(out.out)
    assert out.err == ""
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["command"] == "backup"
    assert set(summary) == {"type", "command", *backup_command.SUMMARY_FIELDS}
    assert summary["dry_run"] is dry_run and summary["warnings"] == 0
    assert (summary["files"], summary["excluded_files"], summary["excluded_bytes"]) == (4, 1, 1000)
    if dry_run:
        assert summary["point_id"] is None and summary["state"] == "dry run"
    else:
        assert summary["state"] == "committed" and agent.points("laptop")[0].id == summary["point_id"]
    progress = [line for line in lines if line["type"] == "progress"]
    assert progress and progress[-1]["files_done"] == 4 and progress[-1]["bytes_done"] == summary["bytes_total"]


def test_verbose_names_each_file_read(agent, tmp_path, capsys):
    data = make_tree(tmp_path / "data")
    assert cli.main(["backup", str(data), "--item", "laptop", "--verbose"]) == exitcodes.OK
    err = capsys.readouterr().err
    assert f"read {data / 'part2.bin'}" in err and f"read {data / 'sub' / 'skip.tmp'}" in err
    assert cli.main(["backup", "--item", "laptop", "--verbose"]) == exitcodes.OK
    assert "read " not in capsys.readouterr().err, "unchanged files are not read"


def test_the_text_summary_counts_what_was_excluded(agent, tmp_path, capsys):
    data = make_tree(tmp_path / "data")
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude", "sub/"]) == exitcodes.OK
    assert "  excluded: 0 files (0 B), 1 directories (their contents not counted)" in capsys.readouterr().out
