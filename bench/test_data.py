"""The benchmark's data helpers (`.venv/bin/python -m pytest bench`): no timing here."""
from __future__ import annotations

import os

from bench import data
from bench.data import EDIT_SIZE, IMAGE_NAME, MiB
from bench.run import parse_size


def test_images_are_the_same_bytes_on_every_machine(tmp_path):
    first = data.image_versions(tmp_path / "a", 8 * MiB, 2)
    again = data.image_versions(tmp_path / "b", 8 * MiB, 2)
    for x, y in zip(first, again):
        assert (x / IMAGE_NAME).read_bytes() == (y / IMAGE_NAME).read_bytes()


def test_a_later_image_version_differs_only_in_scattered_small_edits(tmp_path):
    v1, v2 = ((p / IMAGE_NAME).read_bytes() for p in data.image_versions(tmp_path, 16 * MiB, 2))
    changed = [i for i in range(0, len(v1), EDIT_SIZE) if v1[i:i + EDIT_SIZE] != v2[i:i + EDIT_SIZE]]
    assert len(v1) == len(v2) == 16 * MiB
    assert 0 < len(changed) <= data.EDITS


def test_an_image_has_zero_runs_and_text(tmp_path):
    image = (data.image_versions(tmp_path, 64 * MiB, 1)[0] / IMAGE_NAME).read_bytes()
    blocks = [image[i:i + MiB] for i in range(0, len(image), MiB)]
    assert any(b == bytes(MiB) for b in blocks)
    assert any(b.count(b" ") > MiB // 20 for b in blocks)


def test_sync_tree_rewrites_only_what_changed(tmp_path):
    old, new, work = tmp_path / "old", tmp_path / "new", tmp_path / "work"
    for root, text in ((old, "one"), (new, "two")):
        (root / "sub").mkdir(parents=True)
        (root / "same.txt").write_text("unchanged")
        (root / "sub" / "edited.txt").write_text(text)
    (old / "gone.txt").write_text("removed in the new version")
    os.symlink("same.txt", new / "link")
    data.sync_tree(old, work)
    same = os.stat(work / "same.txt")
    data.sync_tree(new, work)
    assert data.digest(work) == data.digest(new)
    after = os.stat(work / "same.txt")
    assert (after.st_ino, after.st_mtime_ns, after.st_ctime_ns) == (same.st_ino, same.st_mtime_ns, same.st_ctime_ns)


def test_sizes_take_binary_units():
    assert parse_size("2G") == parse_size("2GiB") == 2 << 30
    assert parse_size("512M") == 512 * MiB
    assert parse_size("1048576") == MiB
