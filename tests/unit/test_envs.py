import sys

import gymnasium as gym
import numpy as np
import pytest

from kuberl.envs import VectorStepper, describe, make_vector_env


def test_describe_cartpole():
    shape = describe("CartPole-v1")
    assert (shape.obs_size, shape.num_actions, shape.reward_threshold) == (4, 2, 475)


def test_describe_acrobot():
    shape = describe("Acrobot-v1")
    assert (shape.obs_size, shape.num_actions) == (6, 3)


def test_describe_refuses_continuous_actions():
    with pytest.raises(ValueError, match="Discrete") as err:
        describe("Pendulum-v1")
    assert str(err.value).startswith("env_id: Pendulum-v1")


@pytest.mark.parametrize("env_id", ["NoSuchEnv-v0", "CartPole-v99"])
def test_describe_refuses_unknown_env(env_id):
    with pytest.raises(ValueError) as err:
        describe(env_id)
    assert str(err.value).startswith("env_id:")


def run(env_id, num_envs, max_steps, vector_steps, seed=0):
    """Steps with random actions and checks the transition stream step by step; returns per-env episodes."""
    env = make_vector_env(env_id, num_envs, max_steps)
    stepper = VectorStepper(env, seed=seed)
    rng = np.random.default_rng(seed)
    n_actions = env.single_action_space.n
    resetting = np.zeros(num_envs, bool)  # envs whose next step is a reset step (tracked from outside)
    rows_since_start = np.zeros(num_envs, int)
    episodes = []  # (env, length, return, terminated, truncated)
    ep_return = np.zeros(num_envs)
    prev_next_obs = {}  # env -> next_obs of its last real, unfinished transition
    try:
        assert stepper.obs.shape == (num_envs, env.single_observation_space.shape[0])
        assert stepper.obs.dtype == np.float32
        for _ in range(vector_steps):
            before = stepper.obs.copy()
            actions = rng.integers(0, n_actions, num_envs)
            step = stepper.step(actions)
            result = step.transitions
            real = np.flatnonzero(~resetting)
            # exactly one row per env that is not resetting, in env order
            assert result.obs.shape[0] == result.next_obs.shape[0] == len(real) == result.rewards.shape[0]
            assert result.obs.dtype == result.next_obs.dtype == np.float32
            assert result.actions.dtype == np.int64 and result.rewards.dtype == np.float32
            np.testing.assert_array_equal(result.obs, before[real])
            np.testing.assert_array_equal(result.actions, actions[real])
            np.testing.assert_array_equal(result.next_obs, stepper.obs[real])
            done_rows = result.terminated | result.truncated
            for row, e in enumerate(real):
                if e in prev_next_obs:  # continuity: s' of one transition is s of the next
                    np.testing.assert_array_equal(result.obs[row], prev_next_obs.pop(e))
                rows_since_start[e] += 1
                ep_return[e] += result.rewards[row]
                if done_rows[row]:
                    episodes.append((e, rows_since_start[e], ep_return[e], result.terminated[row],
                                     result.truncated[row]))
                    rows_since_start[e], ep_return[e] = 0, 0.0
                else:
                    prev_next_obs[e] = result.next_obs[row].copy()
            finished = real[done_rows]
            np.testing.assert_array_equal(step.finished_envs, finished)
            mine = [ep for ep in episodes[len(episodes) - len(finished):]]
            np.testing.assert_array_equal(step.episode_lengths, [ep[1] for ep in mine])
            np.testing.assert_allclose(step.episode_returns, [ep[2] for ep in mine], rtol=1e-6)
            resetting = np.zeros(num_envs, bool)
            resetting[finished] = True
        return episodes
    finally:
        stepper.close()


def test_vector_stepper_cartpole():
    episodes = run("CartPole-v1", 4, 20, 200)
    assert len(episodes) >= 20
    assert {e for e, *_ in episodes} == {0, 1, 2, 3}
    for _, length, ret, terminated, truncated in episodes:
        assert 1 <= length <= 20
        assert ret == length  # CartPole pays 1 per step
        assert truncated == (length == 20)  # (an episode may also terminate on its 20th step)
        assert terminated or truncated
    assert any(t for *_, t in episodes), "no episode reached the 20-step limit"
    assert any(t for *_, t, _ in episodes), "no episode terminated"


def test_vector_stepper_acrobot_sync_mode():
    episodes = run("Acrobot-v1", 2, 10, 35)
    assert len(episodes) >= 4
    for _, length, ret, terminated, truncated in episodes:
        assert 1 <= length <= 10
        assert truncated == (length == 10)
        if not terminated:
            assert ret == -length  # Acrobot pays -1 per step until it swings up


def test_lunar_lander_from_the_box2d_extra_describes_and_steps():
    shape = describe("LunarLander-v3")
    assert (shape.obs_size, shape.num_actions, shape.reward_threshold) == (8, 4, 200)
    episodes = run("LunarLander-v3", 2, 30, 100)
    assert len(episodes) >= 4
    for _, length, _, terminated, truncated in episodes:
        assert 1 <= length <= 30 and (terminated or truncated)
        if not terminated:
            assert truncated == (length == 30)


def test_a_missing_box2d_is_refused_with_kuberls_own_extra_named(monkeypatch):
    for module in [m for m in sys.modules if m.startswith("gymnasium.envs.box2d")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setitem(sys.modules, "Box2D", None)  # import Box2D now fails, as where it is not installed
    with pytest.raises(ValueError) as err:
        describe("LunarLander-v3")
    assert str(err.value) == "env_id: LunarLander-v3 needs a package that is not installed: pip install 'kuberl[box2d]'"


def test_vector_stepper_is_seeded():
    def first_obs(seed):
        env = make_vector_env("CartPole-v1", 3, 20)
        stepper = VectorStepper(env, seed=seed)
        try:
            return stepper.obs.copy()
        finally:
            stepper.close()

    np.testing.assert_array_equal(first_obs(5), first_obs(5))
    assert not np.array_equal(first_obs(5), first_obs(6))


class Grid(gym.Env):
    """A 2 x 3 observation: flattened to 6 values."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (2, 3), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self, scale: float = 1.0):
        self.scale = scale

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.full((2, 3), 0.5 * self.scale, np.float32), {}

    def step(self, action):
        return np.full((2, 3), 0.25 * self.scale, np.float32), 1.0, bool(action), False, {}


class Pixels(Grid):
    observation_space = gym.spaces.Box(0, 255, (8, 8, 3), np.uint8)


gym.register("kuberl-test/Grid-v0", entry_point=Grid)
gym.register("kuberl-test/Pixels-v0", entry_point=Pixels)


def test_non_flat_box_observations_are_flattened_and_kwargs_reach_the_env():
    assert describe("kuberl-test/Grid-v0").obs_size == 6
    stepper = VectorStepper(make_vector_env("kuberl-test/Grid-v0", 3, 10, {"scale": 2.0}), seed=0)
    try:
        assert stepper.obs.shape == (3, 6) and (stepper.obs == 1.0).all()
        result = stepper.step(np.zeros(3, np.int64))
        assert result.transitions.next_obs.shape == (3, 6) and (result.transitions.next_obs == 0.5).all()
    finally:
        stepper.close()


def test_kwargs_an_env_does_not_take_are_refused_naming_the_field():
    with pytest.raises(ValueError, match=r"^env_kwargs: kuberl-test/Grid-v0 refused them"):
        describe("kuberl-test/Grid-v0", {"colour": "red"})


def test_image_observations_are_refused_until_there_is_a_convolutional_learner():
    with pytest.raises(ValueError, match="images .* convolutional learner"):
        describe("kuberl-test/Pixels-v0")


def test_kwargs_change_a_built_in_env():
    """CartPole's Sutton-Barto reward is 0 per step and -1 at the end: kwargs go past the native vector env."""
    stepper = VectorStepper(make_vector_env("CartPole-v1", 2, 500, {"sutton_barto_reward": True}), seed=0)
    try:
        rewards = np.concatenate([stepper.step(np.zeros(2, np.int64)).transitions.rewards for _ in range(30)])
        assert set(np.unique(rewards)) <= {0.0, -1.0} and (rewards == -1.0).any()
    finally:
        stepper.close()
