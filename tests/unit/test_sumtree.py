"""The sum tree behind prioritized replay: sums, proportional draws, updates."""

import numpy as np
import pytest

from kuberl.sumtree import SumTree


@pytest.mark.parametrize("size", [1, 5, 8, 1000])
def test_sums_follow_every_update(size):
    rng = np.random.default_rng(size)
    tree, weights = SumTree(size), np.zeros(size)
    for _ in range(20):
        idx = rng.integers(0, size, rng.integers(1, 10))
        values = rng.random(len(idx))
        tree.set(idx, values)
        for i, v in zip(idx, values):  # the last of repeated indices wins, as numpy assignment does
            weights[i] = v
        assert tree.total == pytest.approx(weights.sum(), rel=1e-12)
        np.testing.assert_allclose(tree.get(np.arange(size)), weights)


def test_draws_are_proportional_to_weights():
    tree = SumTree(6)
    weights = np.array([1.0, 0.0, 3.0, 0.5, 0.0, 5.5])
    tree.set(np.arange(6), weights)
    draws = np.random.default_rng(0).random(200_000) * tree.total
    counts = np.bincount(tree.find(draws), minlength=6) / 200_000
    np.testing.assert_allclose(counts, weights / weights.sum(), atol=0.005)
    assert counts[1] == counts[4] == 0  # empty leaves are never drawn


def test_draws_at_the_edges_land_on_weighted_leaves():
    tree = SumTree(5)
    tree.set(np.array([0, 2]), np.array([0.25, 0.75]))
    leaves = tree.find(np.array([0.0, 0.2499, 0.25, 0.9999999, 1.0, 7.0]))
    assert list(leaves) == [0, 0, 2, 2, 2, 2]


def test_bad_updates_are_refused():
    tree = SumTree(4)
    with pytest.raises(IndexError):
        tree.set(np.array([4]), np.array([1.0]))
    with pytest.raises(ValueError):
        tree.set(np.array([0]), np.array([-1.0]))
    with pytest.raises(ValueError):
        tree.set(np.array([0]), np.array([np.nan]))
    assert tree.total == 0
