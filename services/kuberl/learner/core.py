"""The learner's pure parts: split-merge arithmetic, the rate limit, greedy evaluation."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from kuberl.envs import VectorStepper, make_vector_env
from kuberl.nets import Params, QNetwork
from kuberl.tensors import Transitions


def split_counts(total: int, sizes: list[int]) -> list[int]:
    """Splits `total` rows over shards in proportion to their sizes (largest remainder).

    Every non-empty shard gets its share, so each batch mixes all shards as the global buffer
    would; the counts always add up to `total` when any shard has data.
    """
    weight = float(sum(sizes))
    if weight <= 0:
        return [0] * len(sizes)
    exact = [total * s / weight for s in sizes]
    counts = [int(x) for x in exact]
    by_remainder = sorted(range(len(sizes)), key=lambda i: exact[i] - counts[i], reverse=True)
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def merge_rows(arrays: list[np.ndarray], counts: list[int], num_batches: int) -> np.ndarray:
    """Per-shard arrays of num_batches * count rows -> (num_batches, sum of counts, ...): batch i
    holds rows i*count .. (i+1)*count - 1 of each shard, the shards in order."""
    used = [(a, count) for a, count in zip(arrays, counts) if count]
    return np.concatenate([a.reshape(num_batches, count, *a.shape[1:]) for a, count in used], axis=1)


def merge_batches(parts: list[Transitions], counts: list[int], num_batches: int) -> list[Transitions]:
    """Per-shard samples of num_batches * count rows each -> num_batches batches that each
    hold `count` rows from every shard."""
    columns = [merge_rows([part[c] for part in parts], counts, num_batches) for c in range(len(Transitions._fields))]
    return [Transitions(*(col[i] for col in columns)) for i in range(num_batches)]


def importance_weights(probabilities: np.ndarray, total_size: int, exponent: float) -> np.ndarray:
    """Prioritized replay's bias correction, (N * P(i)) ** -beta scaled so the largest is 1
    (Schaul et al.); P(i) is a row's probability of being drawn from the whole replay."""
    weights = (total_size * probabilities.astype(np.float64)) ** -exponent
    return (weights / weights.max(axis=-1, keepdims=True)).astype(np.float32)


def updates_allowed(env_steps: int, updates: int, *, samples_per_insert: float, batch_size: int,
                    learning_starts: int) -> int:
    """How many more updates the samples-per-insert ratio allows after `env_steps` inserts.

    Training speed then follows data, not the learner's speed: a faster learner waits, a slower
    one holds the actors back through the shards' limiter.
    """
    if env_steps < max(learning_starts, batch_size):
        return 0
    return max(0, int(env_steps * samples_per_insert / batch_size) - updates)


def evaluate(net: QNetwork, params: Params, env_id: str, episodes: int, max_episode_steps: int, seed: int,
             env_kwargs: Mapping[str, Any] | None = None) -> float:
    """Mean undiscounted return of the greedy policy over `episodes` episodes (one per env)."""
    return float(greedy_returns(net, params, env_id, episodes, max_episode_steps, seed, env_kwargs).mean())


def greedy_returns(net: QNetwork, params: Params, env_id: str, episodes: int, max_episode_steps: int, seed: int,
                   env_kwargs: Mapping[str, Any] | None = None) -> np.ndarray:
    """The undiscounted return of each of `episodes` greedy episodes (one per env, seeded from `seed`)."""
    stepper = VectorStepper(make_vector_env(env_id, episodes, max_episode_steps, env_kwargs), seed=seed)
    returns = np.full(episodes, np.nan)
    try:
        while np.isnan(returns).any():
            result = stepper.step(net.greedy_actions(params, stepper.obs))
            for env, ret in zip(result.finished_envs, result.episode_returns):
                if np.isnan(returns[env]):  # only an env's first episode counts
                    returns[env] = ret
    finally:
        stepper.close()
    return returns
