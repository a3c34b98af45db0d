import numpy as np
import pytest

from kuberl.buffer.core import Shard, experiment_from_snapshot_name, snapshot_name
from kuberl.config import ExperimentConfig
from kuberl.rpc import NotFound
from kuberl.tensors import Transitions


@pytest.mark.parametrize("experiment_id", ["cartpole", "a/x", "../../zz/passwd", "..", ".", "my run",
                                           "tab\there", "100%", "ünï", "a%zz", "UPPER_lower-1.2"])
def test_snapshot_name_is_a_safe_file_name_and_round_trips(experiment_id):
    name = snapshot_name(experiment_id)
    assert name.endswith(".npz")
    assert "/" not in name and " " not in name and "\t" not in name
    assert all(c.isascii() for c in name)
    assert experiment_from_snapshot_name(name) == experiment_id


def test_snapshot_name_escapes():
    assert snapshot_name("a/x") == "a%2Fx.npz"
    assert snapshot_name("my run") == "my%20run.npz"
    assert snapshot_name("..") == "...npz"  # no separator, so no traversal
    assert snapshot_name("50%") == "50%25.npz"


@pytest.mark.parametrize("experiment_id", ["a b", "team/a", "my exp", "../../etc/passwd", "x/1", "a%2fx"])
def test_snapshot_name_round_trips_before_hex_digits(experiment_id):
    assert experiment_from_snapshot_name(snapshot_name(experiment_id)) == experiment_id


def test_snapshot_names_are_unique():
    assert snapshot_name("\u00e9 ac") != snapshot_name("\u00e9\u20ac")


def batch(n, start=0):
    ids = np.arange(start, start + n)
    return Transitions(obs=np.repeat(ids[:, None], 4, axis=1).astype(np.float32), actions=ids % 2,
                       rewards=ids.astype(np.float32), next_obs=np.zeros((n, 4), np.float32),
                       terminated=np.zeros(n, bool), truncated=np.zeros(n, bool))


CONFIG = ExperimentConfig().replace(buffer={"capacity": 50})


def test_snapshot_and_restore(tmp_path):
    shard = Shard(tmp_path, insert_wait_seconds=0.1)
    shard.open("team/run-x", CONFIG)
    shard.open("other", CONFIG)
    shard.push("team/run-x", batch(30))
    shard.push("team/run-x", batch(40, start=30))
    shard.sample("team/run-x", 5)
    assert shard.snapshot_due(force=True) == 1  # "other" is empty: nothing to write
    assert shard.snapshot_due(force=True) == 0  # unchanged since
    shard.close()

    restored = Shard(tmp_path)
    buffers = restored.experiments()
    assert set(buffers) == {"team/run-x"}
    buf = buffers["team/run-x"]
    assert buf.size == 50 and buf.total_inserted == 70 and buf.total_sampled == 5
    np.testing.assert_array_equal(buf.ordered().rewards, np.arange(20, 70))
    rows, same = restored.sample("team/run-x", 8)
    assert same is buf and rows.rows == 8
    restored.push("team/run-x", batch(1, start=70))  # a restored table accepts inserts before OpenReplay
    assert buf.total_inserted == 71
    restored.close()


def test_restore_keeps_an_id_with_an_escape_before_a_digit(tmp_path):
    shard = Shard(tmp_path)
    shard.open("team/run 1", CONFIG)
    shard.push("team/run 1", batch(3))
    shard.snapshot_due(force=True)
    assert set(Shard(tmp_path).experiments()) == {"team/run 1"}


def test_snapshot_due_respects_interval(tmp_path):
    shard = Shard(tmp_path)
    table = shard.open("e", CONFIG.replace(buffer={"snapshot_interval_seconds": 10.0}))
    shard.push("e", batch(3))
    assert shard.snapshot_due(now=table.last_snapshot + 5) == 0
    assert shard.snapshot_due(now=table.last_snapshot + 10) == 1
    assert (tmp_path / "e.npz").exists()


def test_snapshot_disabled_without_data_dir():
    shard = Shard(None)
    shard.open("e", CONFIG)
    shard.push("e", batch(3))
    assert shard.snapshot_due(force=True) == 0


def test_unreadable_snapshot_is_ignored(tmp_path):
    (tmp_path / "broken.npz").write_bytes(b"not a zip")
    assert Shard(tmp_path).experiments() == {}


def test_open_is_idempotent_and_keeps_rows(tmp_path):
    shard = Shard(tmp_path)
    first = shard.open("e", CONFIG)
    shard.push("e", batch(5))
    again = shard.open("e", CONFIG.replace(buffer={"snapshot_interval_seconds": 3.0}))
    assert again.buffer is first.buffer and again.buffer.size == 5
    assert again.snapshot_interval == 3.0


def test_unknown_experiment_is_not_found(tmp_path):
    shard = Shard(tmp_path)
    with pytest.raises(NotFound):
        shard.push("nope", batch(1))
    with pytest.raises(NotFound):
        shard.sample("nope", 1)
    shard.open("empty", CONFIG)
    with pytest.raises(NotFound):
        shard.sample("empty", 1)  # opened but still empty
    with pytest.raises(ValueError):
        shard.sample("empty", 0)
