"""After training: `kuberl evaluate`, `play` and `export` on the policy a real run left."""

from __future__ import annotations

import json
import re
import runpy
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from kuberl.nets import QNetwork
from kuberl.policy.core import read_policy
from kuberl.trained import FRESH_SEED, fresh_returns, from_run
from tests.conftest import REPO
from tests.policies import assert_acts_alike

pytestmark = pytest.mark.slow


def kuberl(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kuberl.cli", *args], capture_output=True, text=True, timeout=300,
                          cwd=cwd)


@pytest.fixture(scope="module")
def solved_run(tmp_path_factory) -> Path:
    """A solved CartPole run in WORKDIR/kuberl-runs/cartpole (where `kuberl run` puts it)."""
    workdir = tmp_path_factory.mktemp("trained")
    manifest = yaml.safe_load((REPO / "examples" / "cartpole.yaml").read_text())
    manifest["spec"]["seed"] = 3
    (workdir / "cartpole.yaml").write_text(yaml.safe_dump(manifest))
    done = kuberl("run", "cartpole.yaml", "--no-progress", "--timeout", "240", cwd=workdir)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return workdir / "kuberl-runs" / "cartpole"


def test_evaluate_scores_the_result_on_fresh_episodes(solved_run):
    figures_path = solved_run / "figures.json"
    done = kuberl("evaluate", str(solved_run), "--episodes", "100", "-o", str(figures_path), cwd=solved_run)
    assert done.returncode == 0, done.stderr
    figures = json.loads(figures_path.read_text())
    (_newest, result) = read_policy(solved_run / "policy-0", "default/cartpole")
    assert figures["is_result"] and figures["policy_version"] == result.version
    assert figures["episodes"] == 100 and figures["mean"] >= 475 and figures["min"] <= figures["mean"]
    assert f"mean {figures['mean']:.1f}" in done.stdout and "result (version" in done.stderr


def test_play_writes_a_gif_of_episodes_that_score_what_evaluation_said(solved_run):
    # By name: the newest run of the experiment under ./kuberl-runs.
    done = kuberl("play", "cartpole", "--episodes", "2", cwd=solved_run.parents[1])
    assert done.returncode == 0, done.stderr
    returns = [float(r) for r in re.search(r"returns ([\d., ]+)$", done.stdout.strip()).group(1).split(", ")]
    assert len(returns) == 2
    # The run's 100-episode check averages >= 475 yet single episodes may end early, so play is
    # held to the episodes evaluation scores on the same seeds, not to the target.
    policy = from_run(solved_run)
    assert policy.evaluation.mean_return >= 475
    assert returns == [round(float(r), 1) for r in fresh_returns(policy, 2, FRESH_SEED)]
    gif = Image.open(solved_run / "play.gif")
    assert gif.format == "GIF" and gif.size == (600, 400)
    assert gif.n_frames > 100  # two episodes of hundreds of steps, every other frame


def test_export_loads_with_numpy_alone_and_acts_as_the_network_does(solved_run, tmp_path):
    out = tmp_path / "cartpole-policy.npz"
    done = kuberl("export", str(solved_run), "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == str(out), done.stderr
    act, meta = runpy.run_path(str(REPO / "examples" / "load_policy.py"))["load_policy"](out)
    policy = from_run(solved_run)
    assert meta["env_id"] == "CartPole-v1" and meta["policy_version"] == policy.version and meta["is_result"]
    net = QNetwork(meta["obs_size"], meta["num_actions"], tuple(meta["hidden_sizes"]), meta["dueling"])
    obs = np.random.default_rng(0).normal(size=(1000, 4)).astype(np.float32)
    assert np.array_equal(act(obs), net.greedy_actions(policy.params, obs))
    assert act(obs[0]) == net.greedy_actions(policy.params, obs[:1])[0]


def test_the_onnx_export_runs_in_onnx_runtime_as_the_network_does(solved_run, tmp_path):
    import onnxruntime

    out = tmp_path / "cartpole.onnx"
    done = kuberl("export", str(solved_run), "--format", "onnx", "-o", str(out), cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip() == str(out), done.stderr
    policy = from_run(solved_run)
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    obs = np.random.default_rng(1).normal(size=(1000, 4)).astype(np.float32)
    q_values, actions = session.run(["q_values", "action"], {"obs": obs})
    assert_acts_alike(q_values, actions, policy.net.q_values(policy.params, obs))
    assert json.loads(session.get_modelmeta().custom_metadata_map["kuberl"])["policy_version"] == policy.version


def test_an_unknown_run_is_refused_with_the_reason(tmp_path):
    done = kuberl("play", "no-such-experiment", cwd=tmp_path)
    assert done.returncode == 2 and "no-such-experiment" in done.stderr and not list(tmp_path.iterdir())
