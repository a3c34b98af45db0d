"""Sizes derived from a config are checked where they are known, naming the fields: at
validation when they need no environment, at the start of a learner's run when they do."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from kuberl.config import ConfigError, ExperimentConfig, from_spec
from kuberl.learner.training import TrainingRun
from kuberl.lifecycle import VERDICTS, Phase, Reason
from kuberl.nets import QNetwork
from kuberl.rpc import FailedPrecondition
from kuberl.sizes import MAX_MESSAGE_BYTES, environment_problems, row_bytes, weight_count
from kuberl.v1 import learner_service_pb2 as pb


@pytest.mark.parametrize("spec, field", [
    ({"learner": {"batchSize": 65_536, "batchesPerSample": 32}, "buffer": {"capacity": 100_000}},
     "spec.learner.batchesPerSample"),
    ({"learner": {"hiddenSizes": [4096, 4096]}}, "spec.learner.hiddenSizes"),
])
def test_sizes_too_big_for_any_environment_are_refused_with_the_field(spec, field):
    with pytest.raises(ConfigError) as err:
        from_spec(spec)
    assert err.value.path == field


def test_sizes_this_environment_makes_too_big_are_named():
    cfg = ExperimentConfig().replace(learner={"batch_size": 8192, "batches_per_sample": 64},
                                     environment={"push_batch_size": 20_000}, buffer={"capacity": 100_000})
    assert environment_problems(cfg, 4, 2) == []
    fields = [path for path, _ in environment_problems(cfg, 5_000, 2)]
    assert fields == ["learner.batchesPerSample", "environment.pushBatchSize"]
    assert row_bytes(5_000) * 20_000 > MAX_MESSAGE_BYTES
    assert weight_count(QNetwork(4, 2, (64, 64))) == 4 * 64 + 64 + 64 * 64 + 64 + 64 * 2 + 2
    assert weight_count(QNetwork(4, 2, (64,), dueling=True)) == 4 * 64 + 64 + 64 * 3 + 3


class Wide(gym.Env):
    """A real environment with a wide observation (5 000 values), for the learner's check."""

    observation_space = gym.spaces.Box(-1.0, 1.0, (5_000,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(5_000, np.float32), {}

    def step(self, action):
        return np.zeros(5_000, np.float32), 0.0, True, False, {}


def test_a_run_that_cannot_fit_its_environment_ends_invalid_spec_before_training():
    gym.register("kuberl-test/Wide-v0", entry_point=Wide, max_episode_steps=10)
    cfg = ExperimentConfig().replace(env_id="kuberl-test/Wide-v0", environment={"push_batch_size": 20_000})
    run = TrainingRun("wide", cfg, "127.0.0.1:1", "127.0.0.1:1", None)
    assert run.ended and run.state == pb.TRAINING_STATE_INVALID_SPEC
    assert "spec.environment.pushBatchSize" in run.message and "bytes per push" in run.message
    with pytest.raises(FailedPrecondition):
        run.start()
    assert VERDICTS[pb.TrainingState.Name(run.state).removeprefix("TRAINING_STATE_")] == (Phase.FAILED,
                                                                                          Reason.INVALID_SPEC)
