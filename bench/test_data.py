"""The benchmark's data helpers (`.venv/bin/python -m pytest bench`): no timing here."""
from __future__ import annotations

import os
import shutil
import tarfile

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


def _sdist_of(sdists, name, files):
    """A tarball as pip downloads it: one top folder `name`, holding `files` (path → text)."""
    sdists.mkdir(exist_ok=True)
    tree = sdists / "tree" / name
    for path, text in files.items():
        (tree / path).parent.mkdir(parents=True, exist_ok=True)
        (tree / path).write_text(text)
    tarball = sdists / f"{name}.tar.gz"
    with tarfile.open(tarball, "w:gz") as tar:
        tar.add(tree, arcname=name)
    shutil.rmtree(sdists / "tree")
    return tarball


def test_a_history_version_is_one_folder_per_project_without_its_version(tmp_path):
    sdists = tmp_path / "sdists"
    made = {("Alpha", "1.0"): _sdist_of(sdists, "Alpha-1.0", {"alpha/core.py": "one", "README": "a"}),
            ("beta", "2.0"): _sdist_of(sdists, "beta-2.0", {"beta.py": "two"})}
    folder = tmp_path / "v1"
    folder.mkdir()
    data._build_history({"Alpha": "1.0", "beta": "2.0"}, lambda project, version: made[project, version], folder)
    assert data.digest(folder) == {
        "alpha": ("dir",), "alpha/alpha": ("dir",), "alpha/README": data.digest(folder / "alpha")["README"],
        "alpha/alpha/core.py": data.digest(folder / "alpha")["alpha/core.py"], "beta": ("dir",),
        "beta/beta.py": data.digest(folder / "beta")["beta.py"]}
    assert (folder / "alpha" / "alpha" / "core.py").read_text() == "one"


def test_an_sdist_is_found_whatever_the_spelling_of_its_project(tmp_path):
    for name in ("Flask-2.2.0", "flask-3.0.0", "typing_extensions-4.12.2"):
        _sdist_of(tmp_path, name, {"x": name})
    assert data._sdist(tmp_path, "Flask", "2.2.0").name == "Flask-2.2.0.tar.gz"
    assert data._sdist(tmp_path, "Flask", "3.0.0").name == "flask-3.0.0.tar.gz"
    assert data._sdist(tmp_path, "typing-extensions", "4.12.2").name == "typing_extensions-4.12.2.tar.gz"
    assert data._sdist(tmp_path, "Flask", "2.3.0") is None


def test_every_history_version_moves_every_project_on():
    projects = set(data.HISTORY_VERSIONS[0])
    for before, after in zip(data.HISTORY_VERSIONS, data.HISTORY_VERSIONS[1:]):
        assert set(after) == projects
        assert all(after[p] != before[p] for p in projects)
    assert 2 <= data.QUICK_HISTORY_VERSIONS <= len(data.HISTORY_VERSIONS)


def test_changed_files_counts_new_and_edited_files(tmp_path):
    old, new = tmp_path / "old", tmp_path / "new"
    for root in (old, new):
        (root / "sub").mkdir(parents=True)
        (root / "same").write_text("same")
    (old / "sub" / "edited").write_text("before")
    (new / "sub" / "edited").write_text("after")
    (new / "sub" / "added").write_text("new")
    (old / "gone").write_text("only in the old version")
    assert data.changed_files(old, new) == 2
    assert data.file_count(new) == 3
