"""Backups a local user cannot turn against other users' files (Skyvault issue 16, item 6):
what the backup reads is what its walk stat'ed, or the file is left out with a warning (exit
code PARTIAL). Each test swaps part of the tree after the walk stat'ed an entry and before
the backup goes on with it (reads the file, lists the directory, looks up its entries),
through a hook on Walk.entries. The `secret` folder stands for root's files, which an agent
running as root can read and a restore would give back under the user's name. On the
in-process vault (fakes)."""
from __future__ import annotations

import os

import pytest

from skyvault import cli, exitcodes
from skyvault.backup import Backup, walk
from skyvault.commands import common
from skyvault.restore import Restore

SECRET = b"root only: shadow passwords\n"
SECRET_LINK_TARGET = "/root/secret-link-target"
SECRET_XATTR = b"root only: an attribute"


@pytest.fixture
def secret(tmp_path):
    """A folder outside the backed-up tree with the names the tree has, each holding a secret."""
    place = tmp_path / "secret"
    place.mkdir(mode=0o700)
    for name in ("a.txt", "b.txt"):
        (place / name).write_bytes(SECRET)
        os.chmod(place / name, 0o600)
    (place / "link").symlink_to(SECRET_LINK_TARGET)
    (place / "sub").mkdir()
    os.setxattr(place / "sub", "user.secret", SECRET_XATTR)
    return place


@pytest.fixture
def data(tmp_path):
    """The user's tree: data/dir holds the same names as the secret folder."""
    tree = tmp_path / "data"
    (tree / "dir" / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt"):
        (tree / "dir" / name).write_text(f"the user's own {name}\n")
    (tree / "dir" / "link").symlink_to("the user's own target")
    return tree


def swap_after_stat(monkeypatch, path: str, swap) -> None:
    """Call `swap` once the walk has stat'ed the entry at manifest path `path`, before the backup
    goes on with it."""
    entries = walk.Walk.entries

    def entries_then_swap(self, roots, previous=None):
        for entry in entries(self, roots, previous):
            if entry.doc["path"] == path:
                swap()
            yield entry

    monkeypatch.setattr(walk.Walk, "entries", entries_then_swap)


def link_to_secret(place, secret_place) -> None:
    """What the local user does: moves their directory away and puts a symlink in its place."""
    place.rename(place.with_name("moved-away"))
    place.symlink_to(secret_place)


def restored_bytes(vault, point_id: str, target) -> bytes:
    """Everything the point gives back: file contents, symlink targets, extended attributes."""
    Restore(vault).run(point_id, str(target))
    found = []
    for folder, dirs, files in os.walk(target):
        for name in dirs + files:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                found.append(os.readlink(path).encode())
            elif os.path.isfile(path):
                with open(path, "rb") as f:
                    found.append(f.read())
            found += [os.getxattr(path, attr, follow_symlinks=False)
                      for attr in os.listxattr(path, follow_symlinks=False)]
    return b"\n".join(found)


def assert_nothing_secret(restored: bytes) -> None:
    assert SECRET not in restored and SECRET_LINK_TARGET.encode() not in restored
    assert SECRET_XATTR not in restored


def warned_changed(report, *paths: str) -> bool:
    return all(any(path in w and "changed while being backed up" in w for w in report.warnings)
               for path in paths)


def test_a_file_swapped_for_a_symlink_is_left_out(vault, cache, data, secret, tmp_path, monkeypatch):
    a = data / "dir" / "a.txt"
    swap_after_stat(monkeypatch, "data/dir/a.txt", lambda: (a.unlink(), a.symlink_to(secret / "a.txt")))
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed" and warned_changed(report, "data/dir/a.txt")
    assert_nothing_secret(restored_bytes(vault, report.point_id, tmp_path / "r"))
    assert not os.path.lexists(tmp_path / "r" / "data" / "dir" / "a.txt")


@pytest.mark.timeout(30)
def test_a_file_swapped_for_a_fifo_is_left_out_without_waiting_for_a_writer(vault, cache, data, monkeypatch):
    a = data / "dir" / "a.txt"
    swap_after_stat(monkeypatch, "data/dir/a.txt", lambda: (a.unlink(), os.mkfifo(a)))
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed" and warned_changed(report, "data/dir/a.txt")
    assert report.files_read == 1  # b.txt


def test_a_file_swapped_for_another_file_is_left_out(vault, cache, data, secret, tmp_path, monkeypatch):
    """A regular file, but not the one the walk stat'ed: here a hard link to the secret (where
    protected_hardlinks allows one); today's code read it."""
    a = data / "dir" / "a.txt"
    swap_after_stat(monkeypatch, "data/dir/a.txt", lambda: (a.unlink(), os.link(secret / "a.txt", a)))
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed" and warned_changed(report, "data/dir/a.txt")
    assert_nothing_secret(restored_bytes(vault, report.point_id, tmp_path / "r"))


def test_a_directory_swapped_for_a_symlink_before_it_is_listed_is_not_followed(vault, cache, data, secret,
                                                                              tmp_path, monkeypatch):
    """Today's code listed the secret folder through the link and backed up its files."""
    swap_after_stat(monkeypatch, "data/dir", lambda: link_to_secret(data / "dir", secret))
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed" and warned_changed(report, "data/dir")
    assert report.files_read == 0
    assert_nothing_secret(restored_bytes(vault, report.point_id, tmp_path / "r"))


def test_a_directory_swapped_after_its_listing_gives_nothing_of_the_link_target(vault, cache, data, secret,
                                                                               tmp_path, monkeypatch):
    """Swapped once the walk stat'ed its first entry: the files it stat'ed through the directory
    are not read through the link (left out), and its later entries are looked up in the
    directory the walk listed, not through the link: today's code read both secret files, the
    secret link's target and the secret directory's attribute."""
    swap_after_stat(monkeypatch, "data/dir/a.txt", lambda: link_to_secret(data / "dir", secret))
    report = Backup(vault, cache, "laptop").run([str(data)])
    assert report.state == "committed" and warned_changed(report, "data/dir/a.txt", "data/dir/b.txt")
    assert report.files_read == 0
    assert_nothing_secret(restored_bytes(vault, report.point_id, tmp_path / "r"))
    assert os.readlink(tmp_path / "r" / "data" / "dir" / "link") == "the user's own target"
    assert os.path.isdir(tmp_path / "r" / "data" / "dir" / "sub")


def test_a_backup_that_left_a_swapped_file_out_exits_partial(vault, data, secret, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    monkeypatch.setattr(common, "agent", lambda **_: vault)
    swap_after_stat(monkeypatch, "data/dir/a.txt", lambda: link_to_secret(data / "dir", secret))
    assert cli.main(["backup", str(data), "--item", "laptop"]) == exitcodes.PARTIAL
    output = capsys.readouterr()
    assert ": committed" in output.out and "changed while being backed up" in output.err
