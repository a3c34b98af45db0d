"""The policy role's store: versions only move forward; the newest survives a crash."""

import time

import numpy as np
import pytest

from kuberl.policy.core import Evaluation, PolicyStore
from kuberl.snapshots import SnapshotKind, snapshot_name


def weights(value: float) -> list[np.ndarray]:
    return [np.full((2, 3), value, np.float32), np.full(3, value, np.float32)]


def test_versions_only_move_forward():
    store = PolicyStore()
    assert store.newer_than("e", -1) == (-1, None)
    store.update("e", 1, weights(1.0))
    with pytest.raises(ValueError, match="not newer"):
        store.update("e", 1, weights(2.0))
    latest, got = store.newer_than("e", 0)
    assert latest == 1 and got[0][0, 0] == 1.0
    assert store.newer_than("e", 1) == (1, None)


def test_the_newest_version_is_on_disk_within_the_flush_interval(tmp_path):
    store = PolicyStore(tmp_path, flush_seconds=0.05)
    for version in range(1, 6):
        store.update("exp/1", version, weights(float(version)))
    time.sleep(0.3)
    crashed_view = PolicyStore(tmp_path)  # as a restarted process would read it, without close()
    latest, got = crashed_view.newer_than("exp/1", -1)
    assert latest == 5 and np.array_equal(got[1], np.full(3, 5.0, np.float32))
    store.close()
    crashed_view.close()


def test_damaged_weight_files_are_set_aside_and_the_good_ones_restored(tmp_path):
    from tests.unit.test_shard import damage

    store = PolicyStore(tmp_path, flush_seconds=3600)
    store.update("good", 4, [np.ones((2, 2), np.float32), np.zeros(2, np.float32)])
    store.close()
    expected_aside = damage(tmp_path, tmp_path / snapshot_name("good"))
    restored = PolicyStore(tmp_path, flush_seconds=3600)
    version, weights = restored.newer_than("good", -1)
    assert version == 4 and [w.shape for w in weights] == [(2, 2), (2,)]
    assert {p.name for p in restored.set_aside.paths} == expected_aside
    restored.update("good", 5, weights)
    assert restored.flush() == 1
    restored.close()


def test_a_failed_write_keeps_its_experiment_unsaved(tmp_path):
    store = PolicyStore(tmp_path, flush_seconds=3600)
    store.update("blocked", 1, [np.ones(2, np.float32)])
    store.update("fine", 1, [np.ones(2, np.float32)])
    (tmp_path / snapshot_name("blocked")).mkdir()
    (tmp_path / snapshot_name("blocked") / "x").write_text("")
    assert store.flush() == 1
    (tmp_path / snapshot_name("blocked") / "x").unlink()
    (tmp_path / snapshot_name("blocked")).rmdir()
    assert store.flush() == 1  # retried, not forgotten
    store.close()
    assert PolicyStore(tmp_path).newer_than("blocked", -1)[0] == 1


def test_the_result_is_kept_apart_from_the_newest_and_survives_a_restart(tmp_path):
    store = PolicyStore(tmp_path, flush_seconds=3600)
    assert store.result("e") is None
    for version in (1, 2, 3):
        store.update("e", version, weights(float(version)))
    store.set_result("e", 2, weights(2.0), Evaluation(480.5, 100, 12_000))
    store.update("e", 4, weights(4.0))  # training goes on; the result stays
    assert store.newer_than("e", -1)[0] == 4
    store.close()
    restored = PolicyStore(tmp_path, flush_seconds=3600)
    result = restored.result("e")
    assert result.version == 2 and result.evaluation == Evaluation(480.5, 100, 12_000)
    assert np.array_equal(result.weights[0], weights(2.0)[0])
    assert restored.newer_than("e", -1)[0] == 4
    assert restored.release("e") and restored.result("e") is None
    restored.close()


@pytest.mark.parametrize("version, evaluation, match", [
    (5, Evaluation(1.0, 10, 0), "was not published"),
    (-1, Evaluation(1.0, 10, 0), "was not published"),
    (1, Evaluation(float("nan"), 10, 0), "not an evaluation"),
    (1, Evaluation(1.0, 0, 0), "not an evaluation"),
])
def test_a_result_must_be_a_published_version_with_a_real_evaluation(version, evaluation, match):
    store = PolicyStore()
    store.update("e", 1, weights(1.0))
    with pytest.raises(ValueError, match=match):
        store.set_result("e", version, weights(1.0), evaluation)
    with pytest.raises(ValueError, match="empty"):
        store.set_result("e", 1, [], Evaluation(1.0, 10, 0))
    assert store.result("e") is None


def test_a_format_1_file_is_read_as_the_newest_without_a_result(tmp_path):
    POLICY_V1 = SnapshotKind("kuberl.policy", 1)
    POLICY_V1.save(tmp_path, "old", {"version": np.array(7), "w0": weights(7.0)[0], "w1": weights(7.0)[1]})
    store = PolicyStore(tmp_path, flush_seconds=3600)
    assert store.newer_than("old", -1)[0] == 7 and store.result("old") is None
    assert not store.set_aside.paths
    store.close()
