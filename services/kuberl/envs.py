"""Gymnasium environments as kuberl uses them: vectorised, discrete actions, flat observations
(a Box of any shape is flattened; images are refused until there is a convolutional learner)."""

from __future__ import annotations

import importlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import gymnasium as gym
import numpy as np

from kuberl.tensors import Transitions, one_step_rows


@dataclass(frozen=True)
class EnvShape:
    obs_size: int
    num_actions: int
    reward_threshold: float | None


def registered(env_id: str) -> str:
    """The id as registered. "package.module:Name-v0" imports the module first (gymnasium's own
    convention), so that environments from a user's package register themselves."""
    module, _, name = env_id.rpartition(":")
    if module:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"env_id: cannot import {module!r} for {name}: {err}") from None
    return name


def _is_image(space: gym.spaces.Box) -> bool:
    return space.dtype == np.uint8 and len(space.shape) in (2, 3)


def describe(env_id: str, env_kwargs: Mapping[str, Any] | None = None) -> EnvShape:
    """Checks that env_id exists (made with env_kwargs) with a Discrete action space and a Box
    observation that is not an image.

    Raises ValueError naming the field otherwise, so a bad experiment is refused up front.
    """
    try:
        env_id = registered(env_id)
        spec = gym.spec(env_id)
        env = gym.make(env_id, **(env_kwargs or {}))
    except gym.error.DependencyNotInstalled as err:
        # Gymnasium's advice for Box2D (a swig build of box2d-py) is not how kuberl gets it.
        advice = "pip install 'kuberl[box2d]'" if "Box2D" in str(err) else str(err)
        raise ValueError(f"env_id: {env_id} needs a package that is not installed: {advice}") from None
    except gym.error.Error as err:
        raise ValueError(f"env_id: {err}") from None
    except TypeError as err:  # an argument the environment does not take
        raise ValueError(f"env_kwargs: {env_id} refused them: {err}") from None
    try:
        action_space, obs_space = env.action_space, env.observation_space
    finally:
        env.close()
    if not isinstance(action_space, gym.spaces.Discrete):
        raise ValueError(f"env_id: {env_id} has a {type(action_space).__name__} action space; "
                         "kuberl's DQN needs a Discrete one")
    if not isinstance(obs_space, gym.spaces.Box):
        raise ValueError(f"env_id: {env_id} observations are {obs_space}; kuberl needs a Box")
    if _is_image(obs_space):
        raise ValueError(f"env_id: {env_id} observations are images ({obs_space}); they need a convolutional "
                         "learner, which kuberl does not have yet")
    return EnvShape(math.prod(obs_space.shape), int(action_space.n), spec.reward_threshold)


def make_vector_env(env_id: str, num_envs: int, max_episode_steps: int,
                    env_kwargs: Mapping[str, Any] | None = None) -> gym.vector.VectorEnv:
    """K copies stepped together: the env's native vector implementation where it has one
    (CartPole's is ~40x faster than stepping copies one by one) and no kwargs or flattening
    are asked of it, a sync wrapper otherwise. Both use NEXT_STEP autoreset, which
    `VectorStepper` relies on. Observations of more than one dimension come flattened."""
    kwargs = dict(env_kwargs or {})
    env_id = registered(env_id)
    flatten = _needs_flattening(env_id, kwargs)
    wrappers = [gym.wrappers.FlattenObservation] if flatten else None
    native = gym.spec(env_id).vector_entry_point and not kwargs and not flatten
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="vector_entry_point" if native else "sync",
                        max_episode_steps=max_episode_steps, wrappers=wrappers, **kwargs)


def _needs_flattening(env_id: str, kwargs: Mapping[str, Any]) -> bool:
    probe = gym.make(env_id, **kwargs)
    try:
        return len(probe.observation_space.shape or ()) > 1
    finally:
        probe.close()


def make_rendering_env(env_id: str, max_episode_steps: int, env_kwargs: Mapping[str, Any] | None = None) -> gym.Env:
    """One env drawing rgb_array frames, observing as the actors' envs do (flattened if needed)."""
    # Off-screen drawing: pygame (classic control, Box2D) needs no display, and greets no one.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    kwargs = dict(env_kwargs or {})
    env_id = registered(env_id)
    flatten = _needs_flattening(env_id, kwargs)
    env = gym.make(env_id, render_mode="rgb_array", max_episode_steps=max_episode_steps, **kwargs)
    return gym.wrappers.FlattenObservation(env) if flatten else env


@dataclass
class StepResult:
    """One vector step: the transitions it completes (reset steps masked out), finished episodes."""

    transitions: Transitions
    row_envs: np.ndarray  # which env each transition came from
    episode_returns: np.ndarray
    episode_lengths: np.ndarray
    finished_envs: np.ndarray  # which envs the episode_returns belong to


class VectorStepper:
    """Steps a NEXT_STEP-autoreset vector env and keeps per-env episode bookkeeping.

    Under NEXT_STEP autoreset the step after an episode's end only resets that env; its
    (obs, action, next_obs) is not a transition, so it is masked out.
    """

    def __init__(self, env: gym.vector.VectorEnv, seed: int):
        self.env = env
        self.num_envs = env.num_envs
        self.obs, _ = env.reset(seed=seed)
        self.obs = self.obs.astype(np.float32)
        self._resetting = np.zeros(self.num_envs, dtype=bool)
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)

    def step(self, actions: np.ndarray) -> StepResult:
        next_obs, rewards, terminated, truncated, _ = self.env.step(actions)
        next_obs = next_obs.astype(np.float32)
        real = ~self._resetting
        done = (terminated | truncated) & real
        self._returns += np.where(real, rewards, 0.0)
        self._lengths += real
        rows = Transitions(self.obs[real], actions[real].astype(np.int64), rewards[real].astype(np.float32),
                           next_obs[real], terminated[real].astype(bool), truncated[real].astype(bool),
                           one_step_rows(int(real.sum())))
        result = StepResult(rows, np.flatnonzero(real), self._returns[done].copy(), self._lengths[done].copy(),
                            np.flatnonzero(done))
        self._returns[done] = 0.0
        self._lengths[done] = 0
        self._resetting = done
        self.obs = next_obs
        return result

    def close(self) -> None:
        self.env.close()
