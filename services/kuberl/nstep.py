"""n-step transitions, built on the actor from the one-step rows of a vector env.

Every env step starts exactly one row: the window of the next n steps (fewer only where the
episode ends first), whose rewards are summed with discount gamma, with the observation the
window ends on as `next_obs` and its length in `steps`. So the learner bootstraps with
gamma ** steps from where the window ended, through a time-limit truncation as through any
other step, and never through a termination; and rows inserted still equal env steps.
"""

from __future__ import annotations

import numpy as np

from kuberl.tensors import Transitions


class NStepWindows:
    """The last n steps of each env's current episode, in a ring per env."""

    def __init__(self, n: int, gamma: float, num_envs: int, obs_shape: tuple[int, ...]):
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        self.n = n
        self._discounts = (gamma ** np.arange(n)).astype(np.float32)
        self._obs = np.zeros((n, num_envs, *obs_shape), np.float32)
        self._actions = np.zeros((n, num_envs), np.int64)
        self._rewards = np.zeros((n, num_envs), np.float32)
        self._t = np.zeros(num_envs, np.int64)  # steps taken so far in each env's episode

    def add(self, rows: Transitions, envs: np.ndarray) -> tuple[Transitions, np.ndarray]:
        """The rows this vector step completes, and the env each came from; `envs[i]` is the
        env one-step row i came from."""
        if self.n == 1:
            return rows, envs
        n = self.n
        slots = self._t[envs] % n
        self._obs[slots, envs] = rows.obs
        self._actions[slots, envs] = rows.actions
        self._rewards[slots, envs] = rows.rewards
        self._t[envs] += 1
        t = self._t[envs]
        ended = rows.terminated | rows.truncated
        # Full windows end here in every env n or more steps into its episode; where the
        # episode ended, so do the shorter windows that start in its last n - 1 steps.
        masks = [(t >= n, n)] + [(ended & (t >= length), length) for length in range(1, n)]
        parts = [self._windows(rows, envs, t, mask, length) for mask, length in masks]
        self._t[envs[ended]] = 0
        return Transitions.concatenate(parts), np.concatenate([envs[mask] for mask, _ in masks])

    def _windows(self, rows: Transitions, envs: np.ndarray, t: np.ndarray, mask: np.ndarray,
                 length: int) -> Transitions:
        envs, start = envs[mask], t[mask] - length
        ring = (start[None, :] + np.arange(length)[:, None]) % self.n
        rewards = (self._rewards[ring, envs[None, :]] * self._discounts[:length, None]).sum(axis=0)
        first = start % self.n
        return Transitions(self._obs[first, envs], self._actions[first, envs], rewards.astype(np.float32),
                           rows.next_obs[mask], rows.terminated[mask], rows.truncated[mask],
                           np.full(len(envs), length, np.uint8))
