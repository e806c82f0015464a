"""The load benchmark's helpers (`.venv/bin/python -m pytest bench`): its plan, its data and the
comparison of a restore with its source; the run itself is tests/e2e/test_load.py."""
from __future__ import annotations

import os
import shutil

import pytest

from bench import load
from bench.data import MiB, tree_bytes
from shared import formats


def test_eight_agents_share_two_vaults_and_have_two_of_their_own_over_three_tenants():
    plans = load.plan_vaults(8)
    assert [len(p.items) for p in plans] == [3, 3, 1, 1]
    assert [p.shared for p in plans] == [True, True, False, False]
    items = [item for p in plans for item in p.items]
    assert items == [f"agent-{n}" for n in range(1, 9)]
    tenants = {p.tenant for p in plans}
    assert len(tenants) == 3
    assert any({p.shared for p in plans if p.tenant == t} == {True, False} for t in tenants)


def test_too_few_agents_for_a_shared_vault_get_one_each():
    assert [len(p.items) for p in load.plan_vaults(2)] == [1, 1]
    assert [len(p.items) for p in load.plan_vaults(4)] == [3, 1]


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_agents_of_a_vault_share_the_same_common_bytes_and_nothing_else(tmp_path):
    load.write_tree(tmp_path / "a", 4 * MiB, seed=1, shared_seed=99)
    load.write_tree(tmp_path / "b", 4 * MiB, seed=2, shared_seed=99)
    load.write_tree(tmp_path / "a-again", 4 * MiB, seed=1, shared_seed=99)
    a, b = _files(tmp_path / "a"), _files(tmp_path / "b")
    assert a == _files(tmp_path / "a-again")
    common = {k: v for k, v in a.items() if k.startswith("common/")}
    assert common and all(b[k] == v for k, v in common.items())
    assert sum(map(len, common.values())) == int(4 * MiB * load.SHARED_SHARE)
    own_a = {v for k, v in a.items() if k.startswith("own/")}
    assert not own_a & {v for k, v in b.items() if k.startswith("own/")}
    assert tree_bytes(tmp_path / "a") == 4 * MiB


def test_a_tree_is_mostly_small_files_by_count(tmp_path):
    load.write_tree(tmp_path / "solo", 4 * MiB, seed=3)
    files = _files(tmp_path / "solo")
    small = [v for v in files.values() if len(v) <= load.SMALL_FILE_BYTES[1]]
    assert not any(k.startswith("common/") for k in files)
    assert len(small) > 100 and len(small) > 0.9 * len(files)
    assert any(v.count(b" ") > len(v) // 20 for v in files.values())  # some text


def _restored_agent(tmp_path) -> load.Agent:
    agent = load.Agent("agent-1", load.plan_vaults(1)[0], tmp_path / "agent-1")
    load.write_tree(agent.data, 2 * MiB, seed=4)
    shutil.copytree(agent.data, agent.target / agent.data.name)  # copy2: contents, modes and mtimes
    for dirpath, _, _ in os.walk(agent.data):
        st = os.stat(dirpath)
        os.utime(agent.target / agent.data.name / os.path.relpath(dirpath, agent.data), ns=(st.st_atime_ns,
                                                                                             st.st_mtime_ns))
    return agent


def test_an_identical_restore_shows_no_difference(tmp_path):
    assert load.compare(_restored_agent(tmp_path)) == []


def test_one_changed_byte_of_the_same_size_and_mtime_is_a_difference(tmp_path):
    agent = _restored_agent(tmp_path)
    victim = sorted((agent.target / "data" / "own" / "small").rglob("*.dat"))[7]
    st = os.stat(victim)
    content = bytearray(victim.read_bytes())
    content[len(content) // 2] ^= 1
    victim.write_bytes(content)
    os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))
    wrong = load.compare(agent)
    assert len(wrong) == 1 and victim.name in wrong[0]


def test_a_missing_restore_is_a_difference(tmp_path):
    agent = _restored_agent(tmp_path)
    shutil.rmtree(agent.target)
    assert load.compare(agent) == [f"agent-1: nothing restored at {agent.target / 'data'}"]


@pytest.mark.parametrize("value", ["0", str(formats.CHUNKS_PER_MESSAGE + 1)])
def test_an_ingest_batch_out_of_range_is_refused_naming_its_bounds(value, capsys):
    with pytest.raises(SystemExit):
        load.parse_args(["--ingest-batch", value])
    assert f"--ingest-batch must be 1 to {formats.CHUNKS_PER_MESSAGE}, not {value}" in capsys.readouterr().err


def test_the_batched_agent_declares_its_batch_and_runs_the_agents_command(monkeypatch):
    from bench import batched_agent
    from skyvault.backup import uploader
    seen = []
    monkeypatch.setattr(uploader, "INGEST_BATCH", uploader.INGEST_BATCH)
    monkeypatch.setattr(uploader, "HELD_BATCHES", uploader.HELD_BATCHES)
    monkeypatch.setattr(batched_agent.cli, "main", lambda argv: seen.append(argv) or 0)
    assert batched_agent.main(["1", "backup", "data"]) == 0
    assert seen == [["backup", "data"]] and uploader.INGEST_BATCH == 1
    assert uploader.HELD_BATCHES * uploader.INGEST_BATCH < formats.CHUNKS_PER_MESSAGE
    with pytest.raises(SystemExit, match="N must be 1 to"):
        batched_agent.main(["0", "backup", "data"])
