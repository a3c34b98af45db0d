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


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def released_store(tmp_path, clock: Clock, retention: float = 3600.0) -> PolicyStore:
    store = PolicyStore(tmp_path, flush_seconds=3600, result_retention_seconds=retention, clock=clock)
    store.update("e", 1, weights(1.0))
    store.update("e", 2, weights(2.0))
    store.set_result("e", 1, weights(1.0), Evaluation(490.0, 10, 8_000), config=b"\x0a\x0bCartPole-v1")
    assert store.release("e")
    return store


def test_a_released_experiment_keeps_its_result_with_its_config_for_the_retention(tmp_path):
    clock = Clock()
    store = released_store(tmp_path, clock)
    assert store.newer_than("e", -1) == (-1, None), "the newest weights go at release"
    assert store.result("e") is None, "a resuming learner must not take it for its own"
    kept = store.result("e", include_released=True)
    assert (kept.version, kept.evaluation.mean_return, kept.config) == (1, 490.0, b"\x0a\x0bCartPole-v1")
    assert kept.released_at == clock.now and store.expires_at(kept) == clock.now + 3600
    assert np.array_equal(kept.weights[0], weights(1.0)[0])
    assert store.versions() == {}, "a released experiment is not served as live"
    store.release("e")  # again (the operator retries): the first release's time stays
    assert store.result("e", include_released=True).released_at == clock.now

    # A restarted role still has it, until the retention is over: then memory and file go.
    store.close()
    clock.now += 1800
    restored = PolicyStore(tmp_path, flush_seconds=3600, result_retention_seconds=3600, clock=clock)
    assert restored.result("e", include_released=True).config == b"\x0a\x0bCartPole-v1"
    assert not restored.set_aside.paths
    clock.now += 1800
    assert restored.expire() == ["e"]
    assert restored.results() == {} and not list(tmp_path.iterdir())
    restored.close()


def test_a_kept_result_is_deleted_on_request_but_a_live_one_is_not(tmp_path):
    from kuberl.rpc import FailedPrecondition, NotFound

    store = released_store(tmp_path, Clock())
    store.update("live", 1, weights(3.0))
    store.set_result("live", 1, weights(3.0), Evaluation(10.0, 10, 100))
    with pytest.raises(FailedPrecondition, match="not released"):
        store.delete_result("live")
    store.delete_result("e")
    with pytest.raises(NotFound):
        store.delete_result("e")
    assert set(store.results()) == {"live"}
    store.close()
    assert set(PolicyStore(tmp_path, flush_seconds=3600).results()) == {"live"}


def test_no_retention_forgets_the_result_at_release_and_a_reused_id_purges_it_first(tmp_path):
    from kuberl.rpc import FailedPrecondition

    store = released_store(tmp_path, Clock(), retention=0)
    assert store.results() == {} and not list(tmp_path.iterdir())

    store = released_store(tmp_path / "reused", Clock())
    with pytest.raises(FailedPrecondition, match="released"):  # its learner, pushing late
        store.update("e", 3, weights(3.0))
    assert store.release("e", purge=True)  # what the experiment API sends before reusing the id
    store.update("e", 1, weights(5.0))
    assert store.results() == {} and store.newer_than("e", -1)[0] == 1
    with pytest.raises(ValueError, match="result retention"):
        PolicyStore(result_retention_seconds=-1)
