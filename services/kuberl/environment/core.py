"""An actor: epsilon-greedy over a Q-network, K environments stepped at once."""

from __future__ import annotations

import dataclasses
from collections import deque

import numpy as np

from kuberl.config import ExperimentConfig
from kuberl.envs import EnvShape, StepResult, VectorStepper, describe, make_vector_env
from kuberl.nets import Params, QNetwork
from kuberl.nstep import NStepWindows


# The training return an actor reports is the mean over its last this many episodes.
RECENT_EPISODES = 100


class Actor:
    """Chooses actions for K envs and returns the real transitions of each vector step.

    Epsilon decays once per finished episode (the seed's rule): eps = max(end, start * decay**episodes).
    """

    def __init__(self, config: ExperimentConfig, actor_index: int = 0):
        self.config = config
        self.shape: EnvShape = describe(config.env_id, config.env_kwargs)
        seed = config.seed * 1_000 + actor_index
        self.rng = np.random.default_rng(seed)
        env = make_vector_env(config.env_id, config.environment.envs_per_replica,
                              config.environment.max_episode_steps, config.env_kwargs)
        self.stepper = VectorStepper(env, seed=seed)
        self.windows = NStepWindows(config.learner.n_step, config.learner.gamma, config.environment.envs_per_replica,
                                    (self.shape.obs_size,))
        # Until the policy role has weights, act with a network seeded like the learner's.
        self.net = QNetwork.of(config.learner, self.shape.obs_size, self.shape.num_actions)
        self.params: Params = self.net.init(np.random.default_rng(config.seed))
        self.policy_version = -1
        self.episodes = 0
        self.env_steps = 0
        self.recent_returns: deque[float] = deque(maxlen=RECENT_EPISODES)

    @property
    def epsilon(self) -> float:
        x = self.config.exploration
        return max(x.epsilon_end, x.epsilon_start * x.epsilon_decay**self.episodes)

    def load_policy(self, params: Params, version: int) -> None:
        self.net.check(params)
        self.params = params
        self.policy_version = version

    def step(self) -> StepResult:
        obs = self.stepper.obs
        actions = self.net.greedy_actions(self.params, obs)
        explore = self.rng.random(len(actions)) < self.epsilon
        if explore.any():
            actions = np.where(explore, self.rng.integers(0, self.shape.num_actions, len(actions)), actions)
        result = self.stepper.step(actions)
        self.env_steps += result.transitions.rows
        self.episodes += len(result.episode_returns)
        self.recent_returns.extend(result.episode_returns)
        rows, envs = self.windows.add(result.transitions, result.row_envs)
        return dataclasses.replace(result, transitions=rows, row_envs=envs)

    @property
    def mean_recent_return(self) -> float:
        """Mean return of the last RECENT_EPISODES episodes; NaN before the first ends."""
        return float(np.mean(self.recent_returns)) if self.recent_returns else float("nan")

    def close(self) -> None:
        self.stepper.close()
