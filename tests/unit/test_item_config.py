"""An item's configuration (skyvault.items) through `skyvault backup` (skyvault.cli.main) on the
in-process vault: saved with the paths, reused without them, replaced, refused when bad."""
from __future__ import annotations

import json

import pytest

from skyvault import cli, exitcodes, items
from skyvault.backup.exclude import ExclusionRules
from skyvault.commands import common


pytestmark = pytest.mark.usefixtures("state_folder")


@pytest.fixture
def data(tmp_path):
    root = tmp_path / "data"
    (root / "node_modules").mkdir(parents=True)
    (root / "node_modules" / "x.js").write_text("x")
    (root / "a.txt").write_text("a")
    (root / "b.tmp").write_text("b")
    return root


def summary(capsys) -> dict:
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return [line for line in lines if line["type"] == "summary"][-1]


def test_paths_and_exclusions_are_saved_and_reused_without_arguments(agent, data, state_folder, capsys):
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude", "*.tmp", "--exclude", "node_modules/",
                     "--exclude-larger-than", "1M"]) == exitcodes.OK
    assert f"saved the paths and exclusions of item laptop in {state_folder / 'item-laptop.json'}" in \
        capsys.readouterr().err
    doc = json.loads((state_folder / "item-laptop.json").read_text())
    assert doc == {"version": 1, "item": "laptop", "paths": [str(data)], "exclusions": {
        "patterns": ["*.tmp", "node_modules/"], "pattern_files": [], "exclude_caches": False, "if_present": [],
        "larger_than": 1 << 20, "one_file_system": False, "ignore_case": False}}
    assert (state_folder / "item-laptop.json").stat().st_mode & 0o777 == 0o600

    assert cli.main(["backup", "--item", "laptop", "--json"]) == exitcodes.OK
    done = summary(capsys)
    assert (done["files"], done["excluded_files"], done["excluded_dirs"]) == (1, 1, 1)
    assert json.loads((state_folder / "item-laptop.json").read_text()) == doc


def test_paths_given_replace_the_saved_ones_and_keep_the_saved_exclusions(agent, data, tmp_path, state_folder,
                                                                          capsys):
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude", "*.tmp"]) == exitcodes.OK
    capsys.readouterr()
    other = tmp_path / "other"
    other.mkdir()
    (other / "c.tmp").write_text("c")
    (other / "d.txt").write_text("d")
    assert cli.main(["backup", str(other), "--item", "laptop", "--json"]) == exitcodes.OK
    assert (summary(capsys)["files"]) == 1
    config = items.load("laptop")
    assert config.paths == (str(other),) and config.exclusions == ExclusionRules(patterns=("*.tmp",))


def test_exclusions_given_with_paths_replace_the_saved_ones(agent, data, capsys):
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude", "*.tmp"]) == exitcodes.OK
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude-caches"]) == exitcodes.OK
    assert items.load("laptop").exclusions == ExclusionRules(exclude_caches=True)
    assert cli.main(["backup", str(data), "--item", "laptop", "--clear-exclusions"]) == exitcodes.OK
    assert items.load("laptop").exclusions == ExclusionRules()


def test_exclusions_given_without_paths_apply_to_that_backup_only(agent, data, capsys):
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude", "*.tmp"]) == exitcodes.OK
    capsys.readouterr()
    assert cli.main(["backup", "--item", "laptop", "--exclude", "*.txt", "--json"]) == exitcodes.OK
    done = summary(capsys)
    assert done["excluded_files"] == 1 and done["files"] == 2  # b.tmp and node_modules/x.js; a.txt left out
    assert items.load("laptop").exclusions == ExclusionRules(patterns=("*.tmp",))


def test_an_exclude_file_is_saved_by_its_absolute_path_and_read_at_each_backup(agent, data, tmp_path,
                                                                              monkeypatch, capsys):
    (tmp_path / "excludes").write_text("*.tmp\n")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude-file", "excludes"]) == exitcodes.OK
    assert items.load("laptop").exclusions.pattern_files == (str(tmp_path / "excludes"),)
    (tmp_path / "excludes").unlink()
    capsys.readouterr()
    blobs = agent.services.primary.container(agent.container.name).list("")
    before = sorted(blobs)
    assert cli.main(["backup", "--item", "laptop"]) == exitcodes.FAILURE
    assert f"cannot read exclude file {tmp_path / 'excludes'}" in capsys.readouterr().err
    assert sorted(agent.services.primary.container(agent.container.name).list("")) == before


def test_no_paths_and_no_configuration_is_an_error_naming_the_item(agent, state_folder, capsys):
    assert cli.main(["backup", "--item", "desk"]) == exitcodes.FAILURE
    err = capsys.readouterr().err
    assert "item 'desk' has no saved paths on this machine" in err
    assert "skyvault backup PATH... --item desk" in err
    assert not (state_folder / "item-desk.json").exists()


@pytest.mark.parametrize("text, words", [
    ("{not json", "is not an item configuration (not JSON"),
    ('{"version": 2, "item": "laptop", "paths": ["/x"]}', "version 2 is not one this agent reads"),
    ('{"version": 1, "item": "laptop", "paths": []}', "'paths' must be a non-empty list of absolute paths"),
    ('{"version": 1, "item": "laptop", "paths": ["relative"]}', "'paths' must be a non-empty list"),
    ('{"version": 1, "item": "desk", "paths": ["/x"]}', "is the configuration of item 'desk', not 'laptop'"),
    ('{"version": 1, "item": "laptop", "paths": ["/x"], "exclusions": {"patterns": "*.tmp"}}',
     "exclusions.patterns must be a list of strings"),
    ('{"version": 1, "item": "laptop", "paths": ["/x"], "exclusions": {"larger_than": "1M"}}',
     "exclusions.larger_than must be a number of bytes or null"),
    ('{"version": 1, "item": "laptop", "paths": ["/x"], "exclusions": {"exclude_all": true}}',
     "unknown exclusion field 'exclude_all'"),
    ('[]', "must be a JSON object"),
])
def test_a_bad_configuration_is_refused_naming_the_file_and_changes_nothing(agent, data, state_folder, text,
                                                                           words, capsys):
    state_folder.mkdir(mode=0o700)
    (state_folder / "item-laptop.json").write_text(text)
    (state_folder / "item-laptop.json").chmod(0o600)
    for argv in (["backup", "--item", "laptop"], ["backup", str(data), "--item", "laptop"]):
        assert cli.main(argv) == exitcodes.FAILURE
        err = capsys.readouterr().err
        assert words in err and str(state_folder / "item-laptop.json") in err
        assert (state_folder / "item-laptop.json").read_text() == text
    assert agent.points("laptop") == []


def test_a_scheduled_backup_runs_as_schedule_writes_it_and_keeps_the_saved_exclusions(agent, data, capsys):
    assert cli.main(["backup", str(data), "--item", "laptop", "--exclude", "*.tmp"]) == exitcodes.OK
    capsys.readouterr()
    # `skyvault schedule` runs `skyvault backup PATH... --item ITEM` (skyvault.commands.schedule).
    assert cli.main(["backup", str(data), "--item", "laptop", "--json"]) == exitcodes.OK
    assert summary(capsys)["excluded_files"] == 1
