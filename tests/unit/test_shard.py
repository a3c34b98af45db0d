import numpy as np
import pytest

from kuberl.buffer.core import Shard
from kuberl.config import ExperimentConfig
from kuberl.rpc import Exhausted, FailedPrecondition, NotFound
from kuberl.snapshots import snapshot_name
from kuberl.tensors import Transitions


@pytest.mark.parametrize("experiment_id", ["cartpole", "a/x", "../../zz/passwd", "..", ".", "my run",
                                           "tab\there", "100%", "ünï", "x" * 128])
def test_snapshot_names_are_safe_and_of_one_length_whatever_the_id(experiment_id):
    name = snapshot_name(experiment_id)
    assert name.endswith(".npz") and len(name) == 36
    assert all(c in "0123456789abcdef" for c in name.removesuffix(".npz"))


def test_snapshot_names_are_unique():
    assert snapshot_name("\u00e9 ac") != snapshot_name("\u00e9\u20ac")
    assert snapshot_name("a/x") != snapshot_name("a%2Fx")


def batch(n, start=0):
    ids = np.arange(start, start + n)
    return Transitions(obs=np.repeat(ids[:, None], 4, axis=1).astype(np.float32), actions=ids % 2,
                       rewards=ids.astype(np.float32), next_obs=np.zeros((n, 4), np.float32),
                       terminated=np.zeros(n, bool), truncated=np.zeros(n, bool), steps=np.ones(n, np.uint8))


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
    drawn, same = restored.sample("team/run-x", 8)
    assert same is buf and drawn.rows.rows == 8 and drawn.keys is None
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
    assert (tmp_path / snapshot_name("e")).exists()


def test_snapshot_disabled_without_data_dir():
    shard = Shard(None)
    shard.open("e", CONFIG)
    shard.push("e", batch(3))
    assert shard.snapshot_due(force=True) == 0


def damage(data_dir, good_file):
    """Next to a good snapshot: corrupt, truncated, empty, foreign and newer-format files; the
    names of those that must be set aside."""
    whole = good_file.read_bytes()
    (data_dir / "corrupt.npz").write_bytes(b"not a zip at all")
    (data_dir / "truncated.npz").write_bytes(whole[: len(whole) // 2])
    (data_dir / "empty.npz").write_bytes(b"")
    np.savez(data_dir / "foreign.npz", weights=np.ones(3))
    with np.load(good_file) as data:
        newer = dict(data)
    newer["format"] = np.array(str(newer["format"]).rsplit("/", 1)[0] + "/99")
    newer["experiment_id"] = np.array("from the future")
    np.savez(data_dir / "newer.npz", **newer)
    (data_dir / "notes.txt").write_text("not a snapshot: left alone")
    (data_dir / f".{good_file.name}.1.2.tmp").write_bytes(whole[:10])  # a crashed write's leftover
    return {"corrupt.npz.corrupt", "truncated.npz.corrupt", "empty.npz.corrupt", "foreign.npz.corrupt",
            "newer.npz.unsupported"}


def test_damaged_snapshots_are_set_aside_and_the_good_ones_restored(tmp_path):
    shard = Shard(tmp_path)
    shard.open("good", CONFIG)
    shard.push("good", batch(7))
    shard.snapshot_due(force=True)
    expected_aside = damage(tmp_path, tmp_path / snapshot_name("good"))

    restored = Shard(tmp_path)
    assert {eid: b.size for eid, b in restored.experiments().items()} == {"good": 7}
    assert {p.name for p in restored.set_aside.paths} == expected_aside
    assert {p.name for p in tmp_path.iterdir()} == {snapshot_name("good"), "notes.txt", *expected_aside}
    restored.open("good", CONFIG)
    restored.push("good", batch(2, start=7))
    assert restored.snapshot_due(force=True) == 1  # and it goes on snapshotting


def test_a_failing_snapshot_stops_only_its_own_experiment(tmp_path):
    shard = Shard(tmp_path)
    for name in ("blocked", "fine"):
        shard.open(name, CONFIG)
        shard.push(name, batch(3))
    (tmp_path / snapshot_name("blocked")).mkdir()  # the rename onto it fails
    (tmp_path / snapshot_name("blocked") / "x").write_text("")
    assert shard.snapshot_due(force=True) == 1
    assert (tmp_path / snapshot_name("fine")).is_file()
    (tmp_path / snapshot_name("blocked") / "x").unlink()
    (tmp_path / snapshot_name("blocked")).rmdir()
    assert shard.snapshot_due(force=True) == 1  # still marked unsaved: written once it can be
    assert (tmp_path / snapshot_name("blocked")).is_file()


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


def test_a_declared_observation_width_is_enforced_on_every_push(tmp_path):
    shard = Shard(tmp_path)
    shard.open("e", CONFIG, obs_size=4)
    shard.push("e", batch(3))
    wide = batch(2)._replace(obs=np.zeros((2, 5), np.float32), next_obs=np.zeros((2, 5), np.float32))
    with pytest.raises(ValueError, match="batch.obs: rows of shape \\[5\\]; this replay was opened for "
                                         "observations of 4 values"):
        shard.push("e", wide)
    with pytest.raises(ValueError, match="obs_size: 6"):
        shard.open("e", CONFIG, obs_size=6)  # the same experiment cannot change its environment's width
    fresh = Shard(None)
    fresh.open("w", CONFIG, obs_size=4)
    with pytest.raises(ValueError, match="opened for observations of 4"):
        fresh.push("w", wide)  # the first push cannot size the ring either
    assert fresh.table("w").buffer.nbytes == 0


def test_tables_and_their_memory_are_capped_with_the_field_named(tmp_path):
    from kuberl.rpc import Exhausted
    from kuberl.sizes import row_bytes

    small = CONFIG.replace(buffer={"capacity": 1000})
    shard = Shard(tmp_path, max_tables=2, max_bytes=2 * 1000 * row_bytes(4) + 10)
    shard.open("a", small, obs_size=4)
    shard.open("b", small, obs_size=4)
    shard.open("a", small, obs_size=4)  # re-opening is never refused
    with pytest.raises(Exhausted, match="holds 2 replay tables"):
        shard.open("c", small, obs_size=4)
    roomy = Shard(tmp_path / "roomy", max_bytes=1000 * row_bytes(4) + 10)
    roomy.open("a", small, obs_size=4)
    with pytest.raises(Exhausted, match="spec.buffer.capacity: 1000 transitions of 47 bytes need 47000 bytes"):
        roomy.open("b", small, obs_size=4)


def test_a_prioritized_table_takes_priorities_and_a_uniform_one_refuses_them():
    shard = Shard(None)
    shard.open("uniform", CONFIG)
    shard.open("ranked", CONFIG.replace(buffer={"prioritized": True, "priority_exponent": 1.0}))
    for eid in ("uniform", "ranked"):
        shard.push(eid, batch(10))
    with pytest.raises(FailedPrecondition, match="prioritized is off"):
        shard.update_priorities("uniform", np.arange(3), np.ones(3))
    drawn, buf = shard.sample("ranked", 4)
    assert drawn.keys is not None and len(drawn.probabilities) == 4 and buf.priority_mass == pytest.approx(10)
    assert shard.update_priorities("ranked", np.arange(10), np.r_[np.zeros(9), 5.0]) == 10
    assert set(shard.sample("ranked", 50)[0].rows.rewards) == {9.0}
    shard.close()


def test_a_tiny_samples_per_insert_ratio_does_not_hold_inserts_before_the_learner_may_sample():
    """At 0.01 the learner may take its first batch of 64 only after 6 400 inserts: the shard
    must let that many through, or the two limits wait for each other for good."""
    config = ExperimentConfig().replace(learner={"samples_per_insert": 0.01, "batch_size": 64, "learning_starts": 0},
                                        buffer={"capacity": 10_000})
    shard = Shard(None, insert_wait_seconds=0.05)
    shard.open("trickle", config)
    for i in range(27):  # 6 912 rows, past the learner's first 6 400
        shard.push("trickle", batch(256, start=256 * i))
    shard.sample("trickle", 64)
    with pytest.raises(Exhausted):  # and the limit still holds once inserts run far ahead
        for i in range(27, 200):
            shard.push("trickle", batch(256, start=256 * i))
    shard.close()
