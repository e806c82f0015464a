"""How every command speaks (skyvault/commands/output.py): text for people, JSON lines for
scripts, progress on a terminal only; and the options cli gives every command."""
from __future__ import annotations

import fcntl
import io
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import termios

import pytest

from skyvault import cli, exitcodes
from skyvault.commands import completion
from skyvault.commands.output import Output, Progress


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TtyStringIO(io.StringIO):
    def isatty(self) -> bool:
        return True


def streams():
    return io.StringIO(), io.StringIO()


def lines(stream: io.StringIO) -> list[dict]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_text_mode_results_on_stdout_notes_and_warnings_on_stderr():
    out, err = streams()
    o = Output(out=out, err=err)
    o.say("result")
    o.note("reading")
    o.detail("each file")
    o.note("warning: cannot read x")
    o.emit("point", point={"id": "p"})
    o.summary(points=1)
    assert out.getvalue() == "result\n"
    assert err.getvalue() == "reading\nwarning: cannot read x\n"


def test_quiet_keeps_warnings_and_errors_only_and_verbose_adds_details():
    out, err = streams()
    o = Output(quiet=True, verbose=True, out=out, err=err)  # --quiet wins over --verbose
    o.note("reading")
    o.detail("each file")
    o.note("skyvault: warning: old keys")
    o.error("no such point", 1)
    assert err.getvalue() == "skyvault: warning: old keys\nskyvault: error: no such point\n"
    out, err = streams()
    Output(verbose=True, out=out, err=err).detail("read a/b")
    assert err.getvalue() == "read a/b\n"


def test_json_mode_prints_nothing_but_json_lines_on_stdout():
    out, err = streams()
    o = Output(json_mode=True, out=out, err=err, command="vault create")
    o.say("text for people")
    o.note("reading")
    o.note("warning: cannot read x")
    o.note("skyvault: error: y failed")
    o.warn("plain warning")
    o.emit("point", point={"id": "p", "stats": {"files": 2}})
    o.summary(points=1)
    o.error("it failed", exitcodes.PARTIAL)
    assert err.getvalue() == ""
    assert lines(out) == [
        {"type": "note", "message": "reading"},
        {"type": "warning", "message": "cannot read x"},
        {"type": "error", "message": "y failed"},
        {"type": "warning", "message": "plain warning"},
        {"type": "point", "point": {"id": "p", "stats": {"files": 2}}},
        {"type": "summary", "command": "vault create", "points": 1},
        {"type": "error", "message": "it failed", "exit_code": exitcodes.PARTIAL},
    ]


def test_json_quiet_drops_notes_and_progress_not_warnings():
    out, err = streams()
    o = Output(json_mode=True, quiet=True, out=out, err=err)
    o.note("reading")
    with Progress(o, "backup", 1, 10, clock=Clock()) as p:
        p.update(files=1, bytes_=10)
    o.note("warning: w")
    assert lines(out) == [{"type": "warning", "message": "w"}]


def test_progress_prints_nothing_in_text_mode_off_a_terminal():
    out, err = streams()
    o = Output(out=out, err=err)
    with o.progress("restore", 2, 100) as p:
        assert not p.drawn
        p.update(files=1, bytes_=60, current="a/b")
        p.update(files=1, bytes_=40, current="a/c")
    assert out.getvalue() == err.getvalue() == ""


def test_json_progress_at_most_once_a_second_and_a_last_line_with_rate_and_eta():
    out, err = streams()
    clock = Clock()
    o = Output(json_mode=True, out=out, err=err)
    with Progress(o, "restore", 4, 400, clock=clock) as p:
        for step in range(4):
            clock.now += 0.5
            p.update(files=1, bytes_=100, current=f"f{step}")
    got = lines(out)
    assert [g["type"] for g in got] == ["progress"] * 3  # at 1.0 s, 2.0 s, and the last on close
    first = got[0]
    assert first == {"type": "progress", "what": "restore", "files_done": 2, "bytes_done": 200,
                     "total_files": 4, "total_bytes": 400, "seconds_elapsed": 1.0, "bytes_per_second": 200,
                     "seconds_remaining": 1.0, "current": "f1"}
    assert got[-1]["files_done"] == 4 and got[-1]["bytes_done"] == 400 and got[-1]["seconds_remaining"] == 0.0


def test_progress_without_totals_has_no_eta_until_they_are_known():
    out, err = streams()
    clock = Clock()
    o = Output(json_mode=True, out=out, err=err)
    p = Progress(o, "backup", None, None, clock=clock)
    clock.now += 1
    p.update(files=1, bytes_=50)
    p.set_totals(files=3, bytes_=150)
    clock.now += 1
    p.update(files=1, bytes_=50)
    before, after = lines(out)
    assert before["seconds_remaining"] is None and before["total_bytes"] is None
    assert after["total_files"] == 3 and after["seconds_remaining"] == 1.0


def test_on_a_terminal_a_bar_is_drawn_on_stderr_and_cleared_around_notes():
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 wide
    try:
        with os.fdopen(follower, "w", closefd=False) as tty:
            o = Output(out=io.StringIO(), err=tty)
            with o.progress("restore", 1, 1000) as p:
                assert not p.drawn  # stdout is not a terminal: `skyvault restore ... > log` draws nothing
            out = TtyStringIO()
            o = Output(out=out, err=tty)
            with o.progress("restore", 1, 1000) as p:
                assert p.drawn
                p.update(files=1, bytes_=1000, current="home/a.txt")
                o.note("a note")
            tty.flush()
            written = os.read(leader, 65536).decode(errors="replace")
        assert "restore" in written and "a note" in written
        assert out.getvalue() == ""  # the bar never touches stdout
        assert o._bar is None
    finally:
        os.close(leader)
        os.close(follower)


def test_every_command_takes_json_quiet_and_verbose():
    leaves = list(cli._leaves(cli.parser(), []))
    assert len(leaves) >= 30
    for words, leaf in leaves:
        options = {s for a in leaf._actions for s in a.option_strings}
        assert {"--json", "-q", "--quiet", "-v", "--verbose"} <= options, words
        assert leaf.get_default("command_path") == " ".join(words)


def test_a_failing_command_gives_the_same_exit_code_and_a_json_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "nowhere"))
    text_code = cli.main(["points"])
    text = capsys.readouterr()
    assert text.out == "" and "skyvault: error:" in text.err
    json_code = cli.main(["points", "--json"])
    captured = capsys.readouterr()
    assert json_code == text_code == exitcodes.FAILURE
    assert captured.err == ""
    (line,) = lines(io.StringIO(captured.out))
    assert line["type"] == "error" and line["exit_code"] == exitcodes.FAILURE and "register" in line["message"]


def _bash_complete(script: str, words: list[str]) -> list[str]:
    line = " ".join(words)
    program = (f"source {script}\nCOMP_WORDS=({line})\nCOMP_CWORD={len(words) - 1}\nCOMP_LINE='{line}'\n"
               f"COMP_POINT=${{#COMP_LINE}}\n_shtab_skyvault\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n")
    done = subprocess.run(["bash", "-c", program], capture_output=True, text=True, check=True)
    return done.stdout.split()


def test_bash_completion_completes_commands_subcommands_and_options(tmp_path):
    script = tmp_path / "skyvault.bash"
    script.write_text(completion.script("bash"))
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    assert _bash_complete(str(script), ["skyvault", "ba"]) == ["backup"]
    assert set(_bash_complete(str(script), ["skyvault", "vault", ""])) >= {"create", "ticket", "machines"}
    assert "--target" in _bash_complete(str(script), ["skyvault", "restore", "--t"])
    assert "--json" in _bash_complete(str(script), ["skyvault", "points", "--j"])


def test_zsh_completion_names_every_command():
    script = completion.script("zsh")
    assert script.startswith("#compdef skyvault")
    for words, _ in cli._leaves(cli.parser(), []):
        assert re.search(rf"\b{re.escape(words[-1])}\b", script), words


@pytest.mark.skipif(shutil.which("zsh") is None, reason="no zsh on this machine (Debian's zsh package)")
def test_zsh_reads_the_script_and_compinit_registers_it_for_skyvault(tmp_path):
    (tmp_path / "_skyvault").write_text(completion.script("zsh"))
    assert subprocess.run(["zsh", "-n", str(tmp_path / "_skyvault")]).returncode == 0
    done = subprocess.run(["zsh", "-f", "-c", f"fpath=({tmp_path} $fpath); autoload -Uz compinit; "
                           f"compinit -u -d {tmp_path}/zcompdump; print -r -- ${{_comps[skyvault]}}"],
                          capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "_skyvault"
