"""Full file fidelity (Skyvault issue 12): hard links, FIFOs and device nodes (recorded, never
read), owners (restored as root, by name first) and extended attributes round trip; setuid
bits only with their owner. On the in-process vault (fakes); the root-only cases are skipped
unless root, and a restore without owners (what a normal user's restore does) is tested
everywhere."""
from __future__ import annotations

import os
import pwd
import shutil
import stat
import tempfile

import pytest

from shared.messages import ManifestEntry
from skyvault.backup import Backup
from skyvault.restore import Restore
from tests.unit.test_restore_safety import crafted_backup

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown, mknod)")


def test_hard_links_are_restored_as_links_to_one_inode(vault, cache, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.txt").write_text("one inode\n")
    os.link(data / "a.txt", data / "b.txt")
    os.link(data / "a.txt", data / "sub" / "c.txt")
    report = Backup(vault, cache, "app").run([str(data)])
    assert report.files == 1 and report.bytes_total == 10, "the inode's data is backed up once"
    assert report.hardlinks == 2
    restored = Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert restored.files == 1 and restored.hardlinks == 2
    paths = [tmp_path / "r" / "data" / p for p in ("a.txt", "b.txt", "sub/c.txt")]
    assert len({p.stat().st_ino for p in paths}) == 1 and paths[0].stat().st_nlink == 3
    assert paths[2].read_text() == "one inode\n"
    # Restored again over itself, and a link selected alone brings its first path with it.
    Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert len({p.stat().st_ino for p in paths}) == 1
    Restore(vault).run(report.point_id, str(tmp_path / "only"), include=["data/sub/c.txt"])
    only = tmp_path / "only" / "data"
    assert (only / "sub" / "c.txt").stat().st_ino == (only / "a.txt").stat().st_ino
    assert not (only / "b.txt").exists()


def test_a_fifo_is_recorded_never_opened_and_restored(vault, cache, tmp_path):
    """Today's backup skipped it and exited PARTIAL; opening it would wait for a writer forever."""
    data = tmp_path / "data"
    data.mkdir()
    os.mkfifo(data / "pipe", 0o640)
    os.utime(data / "pipe", ns=(1_600_000_000_000_000_000, 1_600_000_000_000_000_000))
    report = Backup(vault, cache, "app").run([str(data)])
    assert report.state == "committed" and report.warnings == [] and report.files_read == 0
    assert report.specials == 1
    restored = Restore(vault).run(report.point_id, str(tmp_path / "r"))
    st = os.lstat(tmp_path / "r" / "data" / "pipe")
    assert restored.specials == 1 and stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == 1_600_000_000_000_000_000


@root_only
def test_device_nodes_round_trip_as_root_and_are_left_out_with_a_warning_without(vault, cache, tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    os.mknod(data / "null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    report = Backup(vault, cache, "app").run([str(data)])
    assert report.state == "committed" and report.warnings == []
    Restore(vault, owners=True).run(report.point_id, str(tmp_path / "r"))
    st = os.lstat(tmp_path / "r" / "data" / "null")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == os.makedev(1, 3)
    assert stat.S_IMODE(st.st_mode) == stat.S_IMODE(os.lstat(data / "null").st_mode)
    unprivileged = Restore(vault, owners=False).run(report.point_id, str(tmp_path / "user"))
    assert not os.path.lexists(tmp_path / "user" / "data" / "null")
    assert unprivileged.warnings == ["data/null: a character device (1, 3): not made, the restore does not run "
                                     "as root"]


@root_only
def test_owners_are_restored_as_root_by_name_first(vault, cache, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "ids.txt").write_text("no names\n")
    os.chown(data / "ids.txt", 54321, 54322)  # ids this machine has no names for
    (data / "link").symlink_to("ids.txt")
    os.chown(data / "link", 54323, 54324, follow_symlinks=False)
    report = Backup(vault, cache, "app").run([str(data)])
    Restore(vault, owners=True).run(report.point_id, str(tmp_path / "r"))
    assert os.lstat(tmp_path / "r" / "data" / "ids.txt")[4:6] == (54321, 54322)
    assert os.lstat(tmp_path / "r" / "data" / "link")[4:6] == (54323, 54324)
    nobody = pwd.getpwnam("nobody")
    point = crafted_backup(vault, cache, tmp_path, monkeypatch, [
        {"path": "named", "mode": 0o644, "mtime": 0, "type": "file", "uid": 4242, "gid": 4243, "user": "nobody",
         "size": 5}])
    Restore(vault, owners=True).run(point, str(tmp_path / "named"))
    assert os.lstat(tmp_path / "named" / "named")[4:6] == (nobody.pw_uid, 4243), "the name, then the id"


def setuid_point(vault, cache, tmp_path) -> str:
    data = tmp_path / "data"
    data.mkdir()
    (data / "tool").write_text("#!/bin/sh\n")
    if os.geteuid() == 0:
        os.chown(data / "tool", 54321, 54322)  # before the mode: a chown clears setuid
    os.chmod(data / "tool", 0o4755)
    (data / "shared").mkdir()
    os.chmod(data / "shared", 0o2775)
    return Backup(vault, cache, "app").run([str(data)]).point_id


def test_without_owners_setuid_is_stripped_with_a_warning_and_nothing_is_chowned(vault, cache, tmp_path):
    """What a normal user's restore does (forced here with owners=False, which root's would not)."""
    report = Restore(vault, owners=False).run(setuid_point(vault, cache, tmp_path), str(tmp_path / "r"))
    tool = os.lstat(tmp_path / "r" / "data" / "tool")
    assert stat.S_IMODE(tool.st_mode) == 0o755 and (tool.st_uid, tool.st_gid) == (os.getuid(), os.getgid())
    assert report.warnings == ["data/tool: setuid/setgid bits not restored: its owner is not restored (only a "
                               "restore as root restores owners)"]
    assert stat.S_IMODE(os.lstat(tmp_path / "r" / "data" / "shared").st_mode) == 0o2775, "a directory keeps setgid"


@root_only
def test_as_root_setuid_is_restored_with_its_owner(vault, cache, tmp_path):
    report = Restore(vault, owners=True).run(setuid_point(vault, cache, tmp_path), str(tmp_path / "r"))
    tool = os.lstat(tmp_path / "r" / "data" / "tool")
    assert stat.S_IMODE(tool.st_mode) == 0o4755 and (tool.st_uid, tool.st_gid) == (54321, 54322)
    assert report.warnings == []


def test_extended_attributes_round_trip_and_a_refused_one_is_a_warning(vault, cache, tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("tagged\n")
    os.setxattr(data / "f.txt", "user.origin", b"\x00binary\xff")
    os.setxattr(data, "user.dir", b"on a directory")
    report = Backup(vault, cache, "app").run([str(data)])
    restored = Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert os.getxattr(tmp_path / "r" / "data" / "f.txt", "user.origin") == b"\x00binary\xff"
    assert os.getxattr(tmp_path / "r" / "data", "user.dir") == b"on a directory"
    assert restored.warnings == []
    point = crafted_backup(vault, cache, tmp_path, monkeypatch, [
        {"path": "odd", "mode": 0o644, "mtime": 0, "type": "file", "xattrs": {"nonamespace.x": "eA=="}, "size": 3}])
    odd = Restore(vault).run(point, str(tmp_path / "odd"))
    assert (tmp_path / "odd" / "odd").stat().st_size == 3
    assert len(odd.warnings) == 1 and odd.warnings[0].startswith("odd: extended attribute nonamespace.x not restored")


def test_an_unchanged_files_attributes_are_not_read_and_a_changed_one_is_read_again(vault, cache, tmp_path,
                                                                                     monkeypatch):
    """An unchanged file keeps its last line, owner and attributes included: what changes them
    (chown, chmod, setxattr) changes its ctime, so its signature. A file read, and a directory
    listed, have their attributes read through the descriptor they are read through, not
    through a path the kernel resolves again."""
    data = tmp_path / "data"
    data.mkdir()
    (data / "f.txt").write_text("tagged\n")
    (data / "g.txt").write_text("plain\n")
    os.setxattr(data / "f.txt", "user.v", b"1")
    Backup(vault, cache, "app").run([str(data)])
    listed = []
    listxattr = os.listxattr
    monkeypatch.setattr(os, "listxattr", lambda at, **kw: listed.append(at) or listxattr(at, **kw))
    report = Backup(vault, cache, "app").run([str(data)])
    assert report.files_unchanged == 2 and report.files_read == 0
    assert len(listed) == 1 and isinstance(listed[0], int), "only the directory's, through its descriptor"
    os.setxattr(data / "f.txt", "user.v", b"2")
    listed.clear()
    report = Backup(vault, cache, "app").run([str(data)])
    assert report.files_unchanged == 1 and report.files_read == 1
    assert len(listed) == 2 and all(isinstance(at, int) for at in listed), "and the file read's, through its own"
    Restore(vault).run(report.point_id, str(tmp_path / "r"))
    assert os.getxattr(tmp_path / "r" / "data" / "f.txt", "user.v") == b"2"
    assert os.listxattr(tmp_path / "r" / "data" / "g.txt") == []


def test_lines_written_before_owners_and_attributes_still_read():
    old = {"path": "d/f", "mode": 0o644, "mtime": 1, "type": "file", "size": 0, "extents": []}
    entry = ManifestEntry.from_doc(old)
    assert (entry.uid, entry.gid, entry.user, entry.group, entry.xattrs) == (None, None, None, None, ())
    assert entry.to_doc() == old


def test_new_entries_round_trip_in_the_documented_key_order():
    cid = "ab" * 32
    for doc in ({"path": "f", "mode": 0o644, "mtime": 1, "type": "file", "uid": 1, "gid": 2, "user": "ada",
                 "group": "staff", "xattrs": {"user.a": "eA=="}, "size": 3, "extents": [[cid, 0, 3]]},
                {"path": "g", "mode": 0o644, "mtime": 1, "type": "hardlink", "target": "f"},
                {"path": "p", "mode": 0o600, "mtime": 1, "type": "fifo", "uid": 0, "gid": 0},
                {"path": "z", "mode": 0o600, "mtime": 1, "type": "blockdev", "uid": 0, "gid": 0, "major": 8,
                 "minor": 1}):
        assert list(ManifestEntry.from_doc(doc).to_doc().items()) == list(doc.items())


@root_only
def test_a_restore_as_a_normal_user_strips_setuid_makes_fifos_and_leaves_devices_out(vault, cache, tmp_path):
    """For real: a child process that has dropped root (to nobody) restores a point holding a
    setuid file, a FIFO and a device; owners=None decides from the effective uid."""
    point = setuid_point(vault, cache, tmp_path)
    data = tmp_path / "data"
    os.mkfifo(data / "pipe", 0o600)
    os.mknod(data / "null", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    point = Backup(vault, cache, "app").run([str(data)]).point_id
    nobody = pwd.getpwnam("nobody")
    target = tempfile.mkdtemp(prefix="skyvault-nonroot-")  # outside pytest's root-only folder
    try:
        os.chown(target, nobody.pw_uid, nobody.pw_gid)
        child = os.fork()
        if child == 0:
            code = 1
            try:
                os.setgroups([])
                os.setgid(nobody.pw_gid)
                os.setuid(nobody.pw_uid)
                report = Restore(vault).run(point, target)
                code = 0 if sorted(report.warnings) == sorted([
                    "data/null: a character device (1, 3): not made, the restore does not run as root",
                    "data/tool: setuid/setgid bits not restored: its owner is not restored (only a restore as "
                    "root restores owners)"]) else 3
            finally:
                os._exit(code)
        assert os.waitpid(child, 0)[1] == 0
        tool = os.lstat(os.path.join(target, "data", "tool"))
        assert stat.S_IMODE(tool.st_mode) == 0o755 and tool.st_uid == nobody.pw_uid
        assert stat.S_ISFIFO(os.lstat(os.path.join(target, "data", "pipe")).st_mode)
        assert not os.path.lexists(os.path.join(target, "data", "null"))
    finally:
        shutil.rmtree(target)
