"""Both export formats of a trained policy, for plain and dueling heads of any depth: the numpy
loader of examples/load_policy.py and the ONNX model in ONNX Runtime act as QNetwork does."""

from __future__ import annotations

import runpy

import numpy as np
import onnxruntime
import pytest

from kuberl.config import ExperimentConfig, Manifest
from kuberl.nets import QNetwork
from kuberl.trained import TrainedPolicy, export, export_onnx
from tests.conftest import REPO
from tests.policies import assert_acts_alike


def trained(hidden: tuple[int, ...], dueling: bool) -> TrainedPolicy:
    net = QNetwork(6, 3, hidden, dueling)
    rng = np.random.default_rng(len(hidden))
    params = [rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in net.init(np.random.default_rng(0))]
    config = ExperimentConfig().replace(env_id="Acrobot-v1", learner={"hidden_sizes": list(hidden), "dueling": dueling})
    return TrainedPolicy(Manifest("acrobot", "default", config), net, params, 7, False, None)


@pytest.mark.parametrize("hidden, dueling", [((16,), False), ((32, 32), True), ((8, 16, 8), False), ((24,), True)])
def test_both_formats_act_as_the_network_does(tmp_path, hidden, dueling):
    policy = trained(hidden, dueling)
    obs = np.random.default_rng(3).normal(size=(500, 6)).astype(np.float32)
    want_q, want_actions = policy.net.q_values(policy.params, obs), policy.net.greedy_actions(policy.params, obs)

    act, meta = runpy.run_path(str(REPO / "examples" / "load_policy.py"))["load_policy"](
        export(policy, tmp_path / "p.npz"))
    assert np.array_equal(act(obs), want_actions) and meta["hidden_sizes"] == list(hidden)

    session = onnxruntime.InferenceSession(str(export_onnx(policy, tmp_path / "p.onnx")),
                                           providers=["CPUExecutionProvider"])
    q_values, actions = session.run(["q_values", "action"], {"obs": obs})
    assert_acts_alike(q_values, actions, want_q)
    assert session.run(["action"], {"obs": obs[:1]})[0][0] == actions[0]
