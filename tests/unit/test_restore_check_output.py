"""Progress and JSON output of `restore` and `check` (Skyvault issue 18): a restore's meter
gets the files and bytes of what it writes, totals known before the first write; with --json
every stdout line is a JSON object with a type, the summary last with its documented fields
(a partial restore's too, before its error); without a terminal no progress is printed; a
check with a damaged chunk prints a "problem" line for it and keeps its exit code. Through
skyvault.cli.main on the in-process vault (tests/unit/conftest.py), as test_exit_codes.py."""
from __future__ import annotations

import io
import json
import os
import threading

import pytest

from shared.domain import chunk_blob_name, container_name
from skyvault import cli, exitcodes
from skyvault.backup import Backup
from skyvault.chunker import CDC_PARAMS
from skyvault.commands import common
from skyvault.commands import restore as restore_command
from skyvault.commands.output import Output
from skyvault.restore import Restore

RESTORE_FIELDS = ["type", "command", "point_id", "regions", "files", "dirs", "symlinks", "hardlinks", "specials",
                  "bytes_written", "chunks_downloaded", "seconds", "errors", "warnings"]
CHECK_FIELDS = ["type", "command", "points", "chunks", "copies_read", "read_data", "subset", "problems",
                "point_problems", "unchecked", "healed", "damaged"]


class Recorder:
    """A meter that keeps what it is told, as the CLI's progress bar would show it."""

    def __init__(self):
        self.totals: list[tuple[int | None, int | None]] = []
        self.files = self.bytes = 0
        self.current: list[str] = []
        self._lock = threading.Lock()

    def set_totals(self, files=None, bytes_=None):
        self.totals.append((files, bytes_))

    def update(self, files=0, bytes_=0, current=None):
        with self._lock:
            assert self.totals, "the totals come before the first write"
            self.files += files
            self.bytes += bytes_
            if current is not None:
                self.current.append(current)


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


pytestmark = pytest.mark.usefixtures("state_folder")


def tree(tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    for i, size in enumerate((1_300_000, 700_000, 0)):
        (data / f"part{i}.bin").write_bytes(os.urandom(size))
    (data / "sub" / "notes.txt").write_text("notes\n")
    (data / "sub" / "scratch.tmp").write_text("scratch\n")
    os.link(data / "part1.bin", data / "sub" / "again.bin")
    (data / "link").symlink_to("sub")
    return data


def files_of(data, exclude_suffix: str | None = None) -> list[str]:
    """The regular files' paths of the tree, one per inode (a hard link is not written again)."""
    seen, paths = set(), []
    for dirpath, _, filenames in sorted(os.walk(data)):
        for name in sorted(filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if (st.st_dev, st.st_ino) not in seen and not (exclude_suffix and name.endswith(exclude_suffix)):
                seen.add((st.st_dev, st.st_ino))
                paths.append(path)
    return paths


def json_lines(text: str) -> list[dict]:
    lines = [json.loads(line) for line in text.splitlines()]
    assert lines and all(isinstance(line, dict) and "type" in line for line in lines)
    return lines


def test_the_meter_gets_the_trees_totals_first_and_ends_at_them(vault, cache, tmp_path):
    data = tree(tmp_path)
    point = Backup(vault, cache, "laptop").run([str(data)]).point_id
    meter = Recorder()
    report = Restore(vault, meter=meter).run(point, str(tmp_path / "r"))
    files = files_of(data)
    assert meter.totals == [(len(files), sum(os.path.getsize(p) for p in files))]
    assert (meter.files, meter.bytes) == meter.totals[0] == (report.files, report.bytes_written)
    assert "data/sub/notes.txt" in meter.current and "data/part0.bin" in meter.current


def test_the_meter_counts_what_the_selection_writes(vault, cache, tmp_path):
    data = tree(tmp_path)
    point = Backup(vault, cache, "laptop").run([str(data)]).point_id
    meter = Recorder()
    Restore(vault, meter=meter).run(point, str(tmp_path / "r"), include=["data/sub"], exclude=["*.tmp"])
    # data/sub/again.bin's first path, data/part1.bin, comes along with it: written once.
    written = [data / "part1.bin", data / "sub" / "notes.txt"]
    assert meter.totals == [(2, sum(p.stat().st_size for p in written))] and (meter.files, meter.bytes) == (
        2, meter.totals[0][1])


def test_restore_json_prints_only_json_lines_and_the_summary_last(agent, tmp_path, capsys):
    data = tree(tmp_path)
    point = Backup(agent, common.cache(), "laptop").run([str(data)]).point_id
    target = tmp_path / "r"
    assert cli.main(["restore", point, "--target", str(target), "--exclude", "*.tmp", "--exclude", "*.bak",
                     "--json"]) == exitcodes.OK
    output = capsys.readouterr()
    assert output.err == ""
    lines = json_lines(output.out)
    summary = lines[-1]
    assert list(summary) == RESTORE_FIELDS and summary["type"] == "summary" and summary["command"] == "restore"
    files = files_of(data, ".tmp")
    assert (summary["point_id"], summary["regions"], summary["files"], summary["hardlinks"], summary["symlinks"],
            summary["errors"], summary["warnings"]) == (point, ["primary"], len(files), 1, 1, [], 0)
    assert summary["bytes_written"] == sum(os.path.getsize(p) for p in files)
    progress = [line for line in lines if line["type"] == "progress"]
    assert progress[-1]["files_done"] == progress[-1]["total_files"] == len(files)
    assert progress[-1]["bytes_done"] == progress[-1]["total_bytes"] == summary["bytes_written"]
    assert {"type": "note", "message": f"--exclude *.bak matches nothing in {point}: it leaves nothing out"} in lines
    assert not (target / "data" / "sub" / "scratch.tmp").exists()


def test_restore_without_a_terminal_prints_the_summary_and_no_progress(agent, tmp_path, capsys):
    data = tree(tmp_path)
    point = Backup(agent, common.cache(), "laptop").run([str(data)]).point_id
    assert cli.main(["restore", point, "--target", str(tmp_path / "r")]) == exitcodes.OK
    output = capsys.readouterr()
    assert output.err == ""
    assert output.out.startswith(f"restored {point} from the primary region into ") and output.out.count("\n") == 1


def test_restore_verbose_notes_each_entry_restored(agent, tmp_path, capsys):
    data = tree(tmp_path)
    point = Backup(agent, common.cache(), "laptop").run([str(data)]).point_id
    assert cli.main(["restore", point, "--target", str(tmp_path / "r"), "--verbose", "--include", "data/sub"]) == 0
    assert capsys.readouterr().err.splitlines() == [
        "restored data", "restored data/part1.bin", "restored data/sub", "restored data/sub/again.bin",
        "restored data/sub/notes.txt", "restored data/sub/scratch.tmp"]


def test_restore_on_a_terminal_draws_a_bar_of_the_bytes_and_piped_none(agent, tmp_path):
    """The command's run() with an Output on terminals: tqdm's bar, with the total; with stdout
    piped (`restore ... > log`), no bar though stderr is a terminal."""
    data = tree(tmp_path)
    point = Backup(agent, common.cache(), "laptop").run([str(data)]).point_id
    total = sum(os.path.getsize(p) for p in files_of(data))
    for out, drawn in ((io.StringIO(), False), (Terminal(), True)):
        err = Terminal()
        args = cli.parser().parse_args(["restore", point, "--target", str(tmp_path / f"r-{drawn}")])
        args.output = Output(out=out, err=err, command="restore")
        assert restore_command.run(args) == exitcodes.OK
        assert out.getvalue().startswith(f"restored {point}")
        if drawn:
            assert "restore" in err.getvalue() and f"{total / 1024 / 1024:.2f}M" in err.getvalue()
        else:
            assert err.getvalue() == ""


def test_a_partial_restore_prints_its_summary_before_the_error_and_exits_partial(agent, tmp_path, capsys):
    data = tmp_path / "data"
    data.mkdir()
    # Larger than the chunker's largest chunk (8 MiB), so bad.bin's first chunk holds none of good.bin.
    (data / "bad.bin").write_bytes(os.urandom(CDC_PARAMS["max_size"] + 1_000_000))
    (data / "good.bin").write_bytes(os.urandom(1_500_000))
    cache = common.cache()
    point = Backup(agent, cache, "laptop").run([str(data)]).point_id
    (cid, _, _), *_ = cache.previous_file(agent.vault_id, "laptop", "data/bad.bin").extents
    assert cid not in {c for c, _, _ in cache.previous_file(agent.vault_id, "laptop", "data/good.bin").extents}
    agent.services.primary.container(container_name(agent.vault_id)).rot(chunk_blob_name(cid), 100)
    assert cli.main(["restore", point, "--target", str(tmp_path / "r"), "--json"]) == exitcodes.PARTIAL
    lines = json_lines(capsys.readouterr().out)
    summary, error = lines[-2:]
    assert summary["type"] == "summary" and list(summary) == RESTORE_FIELDS
    assert summary["files"] == 1 and len(summary["errors"]) == 1 and summary["errors"][0].startswith("data/bad.bin: ")
    assert error["type"] == "error" and error["exit_code"] == exitcodes.PARTIAL
    assert error["message"].startswith("1 entries could not be restored")
    assert (tmp_path / "r" / "data" / "good.bin").exists() and not (tmp_path / "r" / "data" / "bad.bin").exists()


def test_check_json_prints_a_problem_line_for_a_damaged_chunk_and_the_summary(agent, tmp_path, capsys):
    data = tree(tmp_path)
    cache = common.cache()
    Backup(agent, cache, "laptop").run([str(data)])
    assert cli.main(["check", "--json"]) == exitcodes.OK
    clean = json_lines(capsys.readouterr().out)
    assert list(clean[-1]) == CHECK_FIELDS and clean[-1]["problems"] == [] and clean[-1]["subset"] is None
    checked = clean[-1]["chunks"]
    assert [line for line in clean if line["type"] == "progress"][-1]["files_done"] == checked

    (cid, _, _), *_ = cache.previous_file(agent.vault_id, "laptop", "data/part0.bin").extents
    agent.services.primary.container(container_name(agent.vault_id)).rot(chunk_blob_name(cid), 100)
    assert cli.main(["check", "--read-data", "--json"]) == exitcodes.PROBLEMS
    lines = json_lines(capsys.readouterr().out)
    problems = [line for line in lines if line["type"] == "problem"]
    assert [(p["chunk_id"], p["region"], p["kind"]) for p in problems] == [(cid, "primary", "authentication")]
    summary = lines[-1]
    assert summary["type"] == "summary" and summary["command"] == "check" and list(summary) == CHECK_FIELDS
    assert (summary["points"], summary["chunks"], summary["copies_read"], summary["read_data"], summary["subset"],
            summary["damaged"], summary["healed"]) == (1, checked, checked, True, 1.0, 1, 0)
    assert summary["problems"] == [problems[0]["message"]] and cid in problems[0]["message"]
    progress = [line for line in lines if line["type"] == "progress"][-1]
    assert progress["files_done"] == progress["total_files"] == checked and progress["bytes_done"] > 0


def test_check_text_lists_each_problem_on_stderr_even_when_quiet(agent, tmp_path, capsys):
    data = tree(tmp_path)
    cache = common.cache()
    Backup(agent, cache, "laptop").run([str(data)])
    (cid, _, _), *_ = cache.previous_file(agent.vault_id, "laptop", "data/part0.bin").extents
    agent.services.primary.container(container_name(agent.vault_id)).delete(chunk_blob_name(cid))
    assert cli.main(["check", "--quiet"]) == exitcodes.PROBLEMS
    output = capsys.readouterr()
    assert output.err.splitlines() == [f"problem: chunk {cid} (primary): missing: no blob {chunk_blob_name(cid)}"]
    assert ": 1 problems (0 copies healed, 1 marked damaged)" in output.out
