"""n-step windows on the actor against a per-episode reference, with staggered episode ends."""

import numpy as np
import pytest

from kuberl.nstep import NStepWindows
from kuberl.tensors import Transitions

GAMMA = 0.5  # exact sums in float32


def stream(num_envs: int, vector_steps: int, seed: int):
    """One-step rows of `num_envs` envs, as VectorStepper gives them: an env whose episode
    ended skips the next vector step (its reset), episodes end by termination or truncation."""
    rng = np.random.default_rng(seed)
    resetting = np.zeros(num_envs, bool)
    obs = rng.normal(size=(num_envs, 2)).astype(np.float32)
    for _ in range(vector_steps):
        next_obs = rng.normal(size=(num_envs, 2)).astype(np.float32)
        rewards = rng.integers(-4, 5, num_envs).astype(np.float32)
        end = rng.random(num_envs)
        terminated, truncated = end < 0.1, (end >= 0.1) & (end < 0.2)
        real = ~resetting
        envs = np.flatnonzero(real)
        yield Transitions(obs[real], rng.integers(0, 3, num_envs)[real], rewards[real], next_obs[real],
                          terminated[real], truncated[real], np.ones(len(envs), np.uint8)), envs
        resetting = (terminated | truncated) & real
        obs = next_obs


def reference(one_step: list[tuple[Transitions, np.ndarray]], n: int) -> set[tuple]:
    """Each env's steps split into episodes; every step starts the window of min(n, left) steps."""
    per_env: dict[int, list[tuple]] = {}
    for rows, envs in one_step:
        for i, env in enumerate(envs):
            per_env.setdefault(int(env), []).append(tuple(col[i] for col in rows))
    out = set()
    for steps in per_env.values():
        episode: list[tuple] = []
        for step in steps:
            episode.append(step)
            if step[4] or step[5]:  # terminated or truncated: the episode is complete
                out |= windows_of(episode, n, complete=True)
                episode = []
        out |= windows_of(episode, n, complete=False)
    return out


def windows_of(episode: list[tuple], n: int, complete: bool) -> set[tuple]:
    out = set()
    for i in range(len(episode)):
        length = min(n, len(episode) - i)
        if length < n and not complete:
            continue  # the window is still open at the end of the stream
        last = episode[i + length - 1]
        ret = sum(GAMMA ** j * float(episode[i + j][2]) for j in range(length))
        out.add((tuple(episode[i][0]), int(episode[i][1]), ret, tuple(last[3]), bool(last[4]), bool(last[5]),
                 length))
    return out


def as_set(rows: Transitions) -> set[tuple]:
    return {(tuple(rows.obs[i]), int(rows.actions[i]), float(rows.rewards[i]), tuple(rows.next_obs[i]),
             bool(rows.terminated[i]), bool(rows.truncated[i]), int(rows.steps[i])) for i in range(rows.rows)}


@pytest.mark.parametrize("n", [2, 3, 5])
def test_windows_match_the_per_episode_reference(n):
    one_step = list(stream(num_envs=4, vector_steps=300, seed=n))
    windows = NStepWindows(n, GAMMA, num_envs=4, obs_shape=(2,))
    emitted = []
    for rows, envs in one_step:
        out, out_envs = windows.add(rows, envs)
        assert out.rows == len(out_envs) and out.steps.dtype == np.uint8
        emitted.append(out)
    got = Transitions.concatenate(emitted)
    want = reference(one_step, n)
    assert got.rows == len(want) == len(as_set(got))  # no window twice, none lost
    assert as_set(got) == want
    # the fixture exercised both ends and windows cut short by them
    assert got.terminated.any() and got.truncated.any() and (got.steps < n).any() and (got.steps == n).any()
    # every env step started one row, except those whose window is still open
    assert got.rows <= sum(r.rows for r, _ in one_step) <= got.rows + 4 * (n - 1)


def test_one_step_passes_rows_through():
    rows, envs = next(stream(num_envs=3, vector_steps=1, seed=0))
    out, out_envs = NStepWindows(1, GAMMA, 3, (2,)).add(rows, envs)
    assert out is rows and out_envs is envs
