"""The policy role's store: versions only move forward; the newest survives a crash."""

import time

import numpy as np
import pytest

from kuberl.policy.core import PolicyStore


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
