import math

import numpy as np
import pytest

from kuberl.experiment.core import ReplicaAssigner
from kuberl.learner.core import evaluate, merge_batches, split_counts, updates_allowed
from kuberl.nets import QNetwork
from kuberl.tensors import Transitions


@pytest.mark.parametrize("total, sizes, want", [
    (64, [100, 300], [16, 48]),
    (64, [0, 300], [0, 64]),
    (10, [1, 1, 1], [4, 3, 3]),
    (7, [5, 0, 5, 0], [4, 0, 3, 0]),
    (32, [0, 0], [0, 0]),
    (32, [], []),
    (0, [3, 4], [0, 0]),
    (5, [7], [5]),
])
def test_split_counts_examples(total, sizes, want):
    got = split_counts(total, sizes)
    if sizes in ([1, 1, 1], [5, 0, 5, 0]):  # ties: any largest-remainder winner will do
        assert sorted(got) == sorted(want) and [g == 0 for g in got] == [s == 0 for s in sizes]
    else:
        assert got == want


def test_split_counts_properties():
    rng = np.random.default_rng(0)
    for _ in range(300):
        sizes = rng.integers(0, 1000, rng.integers(1, 8)).tolist()
        if rng.random() < 0.3:
            sizes[rng.integers(len(sizes))] = 0
        total = int(rng.integers(0, 600))
        counts = split_counts(total, sizes)
        assert len(counts) == len(sizes)
        if sum(sizes) == 0:
            assert counts == [0] * len(sizes)
            continue
        assert sum(counts) == total
        for c, s in zip(counts, sizes):
            assert c >= 0
            if s == 0:
                assert c == 0
            assert abs(c - total * s / sum(sizes)) < 1.0  # within one of the exact share


def shard_sample(shard, rows):
    """Rows from one shard, marked by shard index in obs and numbered in rewards."""
    return Transitions(obs=np.full((rows, 4), shard, np.float32), actions=np.full(rows, shard, np.int64),
                       rewards=np.arange(rows, dtype=np.float32), next_obs=np.full((rows, 4), shard, np.float32),
                       terminated=np.zeros(rows, bool), truncated=np.ones(rows, bool),
                       steps=np.ones(rows, np.uint8))


def test_merge_batches_takes_count_rows_from_each_shard():
    counts, num_batches = [3, 0, 5], 4
    parts = [shard_sample(i, c * num_batches) for i, c in enumerate(counts)]
    batches = merge_batches(parts, counts, num_batches)
    assert len(batches) == num_batches
    for b, batch in enumerate(batches):
        assert batch.rows == 8
        assert batch.obs.shape == (8, 4) and batch.next_obs.shape == (8, 4)
        np.testing.assert_array_equal(batch.obs[:, 0], [0, 0, 0, 2, 2, 2, 2, 2])
        np.testing.assert_array_equal(batch.actions, [0, 0, 0, 2, 2, 2, 2, 2])
        # batch b holds shard i's rows b*count_i .. (b+1)*count_i - 1: no row used twice
        np.testing.assert_array_equal(batch.rewards[:3], np.arange(3 * b, 3 * b + 3))
        np.testing.assert_array_equal(batch.rewards[3:], np.arange(5 * b, 5 * b + 5))
        assert batch.truncated.all() and not batch.terminated.any()


def test_merge_batches_single_batch():
    batches = merge_batches([shard_sample(0, 2), shard_sample(1, 6)], [2, 6], 1)
    assert len(batches) == 1
    np.testing.assert_array_equal(batches[0].actions, [0, 0, 1, 1, 1, 1, 1, 1])


def test_updates_allowed():
    kw = dict(samples_per_insert=8.0, batch_size=32, learning_starts=1000)
    assert updates_allowed(0, 0, **kw) == 0
    assert updates_allowed(999, 0, **kw) == 0
    assert updates_allowed(1000, 0, **kw) == 250  # 1000 * 8 / 32
    assert updates_allowed(1000, 240, **kw) == 10
    assert updates_allowed(1000, 250, **kw) == 0
    assert updates_allowed(1000, 300, **kw) == 0  # never negative
    assert updates_allowed(1003, 0, **kw) == 250  # floor(250.75)
    assert updates_allowed(1004, 0, **kw) == 251


def test_updates_allowed_waits_for_a_full_batch():
    kw = dict(samples_per_insert=4.0, batch_size=64, learning_starts=0)
    assert updates_allowed(63, 0, **kw) == 0
    assert updates_allowed(64, 0, **kw) == 4
    assert updates_allowed(100, 1, samples_per_insert=0.5, batch_size=10, learning_starts=0) == 4


TWO_BY_TWO = QNetwork(4, 2, (2, 2))


def balancing_policy():
    """A 4-2-2-2 ReLU net whose greedy action pushes toward the pole's lean: 1 iff angle + angular velocity > 0."""
    w1 = np.array([[0, 0], [0, 0], [1, -1], [1, -1]], np.float32)
    w2 = np.eye(2, dtype=np.float32)
    w3 = np.array([[0, 1], [1, 0]], np.float32)
    return [w1, np.zeros(2, np.float32), w2, np.zeros(2, np.float32), w3, np.zeros(2, np.float32)]


def test_evaluate_a_fixed_policy_on_cartpole():
    params = balancing_policy()
    first = evaluate(TWO_BY_TWO, params, "CartPole-v1", episodes=5, max_episode_steps=500, seed=3)
    assert math.isfinite(first) and 8 <= first <= 500
    assert first > 100  # the hand-made controller balances far better than chance
    assert evaluate(TWO_BY_TWO, params, "CartPole-v1", episodes=5, max_episode_steps=500, seed=3) == first


def test_evaluate_respects_max_episode_steps_and_is_deterministic():
    params = balancing_policy()
    capped = evaluate(TWO_BY_TWO, params, "CartPole-v1", episodes=3, max_episode_steps=30, seed=0)
    assert 8 <= capped <= 30
    constant = [np.zeros_like(p) for p in params]  # always action 0: the pole falls quickly
    short = evaluate(TWO_BY_TWO, constant, "CartPole-v1", episodes=4, max_episode_steps=500, seed=1)
    assert 8 <= short < 20
    assert evaluate(TWO_BY_TWO, constant, "CartPole-v1", episodes=4, max_episode_steps=500, seed=1) == short


def test_assigner_round_robin():
    assigner = ReplicaAssigner()
    replicas = ["a", "b", "c"]
    assert assigner.assign(replicas, 2) == ["a", "b"]
    assert assigner.assign(replicas, 2) == ["c", "a"]
    assert assigner.assign(replicas, 1) == ["b"]
    assert assigner.assign(replicas, 5) == ["c", "a", "b"]  # capped at the replicas that exist
    assert assigner.assign(replicas, 0) == []


def test_assigner_follows_the_current_replicas():
    assigner = ReplicaAssigner()
    assert assigner.assign(["a", "b"], 1) == ["a"]
    assert assigner.assign(["x", "y", "z", "w"], 2) == ["y", "z"]


def test_assigner_with_no_replica():
    with pytest.raises(LookupError):
        ReplicaAssigner().assign([], 1)
