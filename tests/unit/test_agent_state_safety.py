"""The agent's state folder is its user's alone (Skyvault issue 16, item 8): made 0700, every
file in it 0600 (the cache's SQLite side files too), whatever the umask; modes of our own
that are too open are fixed, a folder or file another user owns or could write is refused
with an error naming it; no state file is written or read through a symlink planted in
the folder."""
from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest

from skyvault import cli, exitcodes, home
from skyvault.cache import Cache

root_only = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (chown)")
ANOTHER_UID = 54321


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SKYVAULT_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def no_umask():
    """The worst umask: nothing masked, so every mode comes from the code."""
    old = os.umask(0)
    yield
    os.umask(old)


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def modes_in(folder) -> dict[str, int]:
    return {name: mode(folder / name) for name in os.listdir(folder)}


def register_this_machine() -> None:
    home.write_json("agent.json", {"credentials": {}, "keyCheck": "x"})


def test_the_folder_is_made_0700_and_every_file_in_it_0600(folder, no_umask):
    register_this_machine()
    home.write_json("keys.json", {"vaultId": "v", "keys": {}})
    cache = Cache(home.home() / "cache.sqlite")
    cache.add_known("vault", ["c1", "c2"])
    cache.record_file("vault", "item", "run", "data/a.txt", "sig", b"{}\n", ["c1"])
    cache.make_current("vault", "item", "run")
    assert mode(folder) == 0o700
    files = modes_in(folder)
    assert {"agent.json", "keys.json", "cache.sqlite", "cache.sqlite-wal", "cache.sqlite-shm"} <= set(files)
    assert set(files.values()) == {0o600}
    cache.close()


def test_a_rollback_journal_of_the_cache_is_0600_too(folder, no_umask):
    """SQLite gives its side files the database file's mode: the cache file is made 0600 before
    SQLite opens it (a new database would get the umask's 0666)."""
    Cache(folder / "cache.sqlite").close()
    db = sqlite3.connect(folder / "cache.sqlite", isolation_level=None)
    db.execute("PRAGMA journal_mode=PERSIST")  # keeps the -journal file once the write is over
    db.execute("INSERT INTO known VALUES ('vault', 'c3')")
    db.close()
    assert mode(folder / "cache.sqlite-journal") == 0o600
    assert set(modes_in(folder).values()) == {0o600}


def test_modes_of_our_own_that_are_too_open_are_fixed(folder):
    register_this_machine()
    Cache(folder / "cache.sqlite").close()
    os.chmod(folder, 0o755)  # what an older agent made, with the usual umask
    os.chmod(folder / "agent.json", 0o644)
    os.chmod(folder / "cache.sqlite", 0o644)
    assert home.agent_state()["keyCheck"] == "x"
    assert mode(folder) == 0o700 and set(modes_in(folder).values()) == {0o600}
    os.chmod(folder / "cache.sqlite", 0o640)
    Cache(folder / "cache.sqlite").close()
    assert mode(folder / "cache.sqlite") == 0o600


@pytest.mark.parametrize("folder_mode", [0o777, 0o770, 0o702])
def test_a_folder_others_can_write_is_refused_by_name(folder, folder_mode, capsys):
    register_this_machine()
    os.chmod(folder, folder_mode)
    with pytest.raises(home.UnsafeStateFolder, match=f"{folder}.* writable by"):
        home.agent_state()
    with pytest.raises(home.UnsafeStateFolder):
        home.write_json("agent.json", {})
    assert cli.main(["points"]) == exitcodes.FAILURE
    assert str(folder) in capsys.readouterr().err
    assert mode(folder) == folder_mode, "refused, not changed"


@root_only
def test_a_folder_of_another_user_is_refused_by_name(folder, capsys):
    register_this_machine()
    os.chown(folder, ANOTHER_UID, -1)
    with pytest.raises(home.UnsafeStateFolder, match=f"{folder} belongs to uid {ANOTHER_UID}"):
        home.agent_state()
    with pytest.raises(home.UnsafeStateFolder):
        Cache(home.home() / "cache.sqlite")
    assert cli.main(["points"]) == exitcodes.FAILURE
    assert str(folder) in capsys.readouterr().err


@root_only
def test_a_file_of_another_user_in_the_folder_is_refused_by_name(folder):
    register_this_machine()
    os.chown(folder / "agent.json", ANOTHER_UID, -1)
    with pytest.raises(home.UnsafeStateFolder, match=f"{folder / 'agent.json'} belongs to uid {ANOTHER_UID}"):
        home.agent_state()


def test_write_json_does_not_follow_a_planted_tmp_symlink(folder, tmp_path):
    """Today's code wrote the credentials through `agent.tmp`, a link to anywhere."""
    register_this_machine()
    victim = tmp_path / "victim"
    victim.write_text("left as it is\n")
    (folder / "agent.tmp").symlink_to(victim)
    home.write_json("agent.json", {"credentials": {"secret": "s"}, "keyCheck": "y"})
    assert victim.read_text() == "left as it is\n"
    assert json.loads((folder / "agent.json").read_text())["keyCheck"] == "y"
    assert mode(folder / "agent.json") == 0o600 and os.path.islink(folder / "agent.tmp")


def test_a_state_file_that_is_a_symlink_is_refused_not_read(folder, tmp_path):
    register_this_machine()
    elsewhere = tmp_path / "elsewhere.json"
    elsewhere.write_text(json.dumps({"credentials": {}, "keyCheck": "planted"}))
    (folder / "agent.json").unlink()
    (folder / "agent.json").symlink_to(elsewhere)
    with pytest.raises(home.UnsafeStateFolder, match=f"{folder / 'agent.json'} is a symbolic link"):
        home.agent_state()
    (folder / "keys.json").symlink_to(elsewhere)
    with pytest.raises(home.UnsafeStateFolder, match=f"{folder / 'keys.json'} is a symbolic link"):
        home.read_optional_json("keys.json")


def test_a_cache_file_that_is_a_symlink_is_refused(folder, tmp_path):
    folder.mkdir(mode=0o700)
    elsewhere = tmp_path / "elsewhere.sqlite"
    (folder / "cache.sqlite").symlink_to(elsewhere)
    with pytest.raises(home.UnsafeStateFolder, match=f"{folder / 'cache.sqlite'} is a symbolic link"):
        Cache(folder / "cache.sqlite")
    assert not elsewhere.exists()


def test_a_missing_folder_is_still_not_configured_and_not_made_by_reading(folder):
    with pytest.raises(home.NotConfigured, match="agent.json does not exist"):
        home.agent_state()
    assert home.read_optional_json("keys.json") is None
    assert not folder.exists()
