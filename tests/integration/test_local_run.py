"""`kuberl run` end to end: every role a real process, CartPole-v1 solved within a step budget."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml

from kuberl.analytics.core import Query, SQLiteStore
from kuberl.config import ExperimentConfig
from kuberl.learner.core import evaluate
from kuberl.nets import QNetwork
from kuberl.policy.core import PolicyStore
from tests.conftest import REPO

pytestmark = pytest.mark.slow


def test_kuberl_run_solves_cartpole_with_two_actors_and_two_shards(tmp_path):
    manifest = yaml.safe_load((REPO / "examples" / "cartpole.yaml").read_text())
    manifest["spec"]["seed"] = 7
    manifest["spec"]["stop"]["maxEnvSteps"] = 300_000  # the budget: far above the ~20-80k it takes
    path = tmp_path / "cartpole.yaml"
    path.write_text(yaml.safe_dump(manifest))
    output = tmp_path / "run"

    done = subprocess.run([sys.executable, "-m", "kuberl.cli", "run", str(path), "--output", str(output),
                           "--no-progress", "--timeout", "240"], capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "cartpole: Succeeded" in done.stdout
    greedy = float(re.search(r"^  greedy return\s+([\d.]+)", done.stdout, re.M).group(1))
    steps = int(re.search(r"^  env steps\s+(\d+)", done.stdout, re.M).group(1))
    assert greedy >= 475 and 0 < steps <= 300_000
    assert (output / "learning_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # Solved means solved: the result the policy role kept scores the target on 100 episodes
    # with seeds neither the evaluations nor the confirmation used, and the summary says so.
    reported = re.search(r"^  result\s+policy version (\d+): mean return ([\d.]+) over 100 fresh episodes",
                         done.stdout, re.M)
    assert reported, done.stdout[-2000:]
    store = PolicyStore(output / "policy-0")
    result = store.result("default/cartpole")
    store.close()
    assert result.version == int(reported.group(1)) and result.evaluation.episodes == 100
    assert result.evaluation.mean_return == pytest.approx(float(reported.group(2)), abs=0.05)
    assert result.evaluation.mean_return >= 475
    net = QNetwork.of(ExperimentConfig().learner, 4, 2)
    assert evaluate(net, result.weights, "CartPole-v1", 100, 500, seed=987_654_321) >= 475

    store = SQLiteStore(output / "analytics.db")
    try:
        # Both actors reported episodes, both shards reported their sizes: every replica took part.
        returns, episodes = store.query(Query("default/cartpole", "charts/episodic_return"))
        assert {p.node_name for p in returns} == {"environment-0", "environment-1"}
        sizes, _ = store.query(Query("default/cartpole", "buffer/size"))
        assert {p.node_name for p in sizes} == {"buffer-0", "buffer-1"}
        assert all(p.value > 0 for p in sizes[-2:])
        evals, _ = store.query(Query("default/cartpole", "charts/eval_return"))
        assert evals[-1].value >= 475
        # What held training, second by second: a share of each second, from the learner.
        waits, _ = store.query(Query("default/cartpole", "learner/waiting_for_data"))
        assert waits and {p.node_name for p in waits} == {"learner-0"}
        assert all(0.0 <= p.value <= 1.0 for p in waits)
    finally:
        store.close()
    # Every child stopped: each role's log ends with its shutdown.
    for log in output.glob("*.log"):
        assert "stopped" in log.read_text().splitlines()[-1], log.name


def test_bad_manifests_are_refused_before_anything_starts(tmp_path):
    base = yaml.safe_load((REPO / "examples" / "cartpole.yaml").read_text())
    cases = {
        "spec.buffer.replicas": ("buffer", {"replicas": 0}),
        "spec.learner.batchSize": ("learner", {"batchSize": 64, "hiddenSizes": [64, 64], "samplesPerInsert": 8,
                                               "learningStarts": 10, "targetUpdateInterval": 5,
                                               "learningRate": 0.001, "bogus": 1}),
        "spec.envId": ("envId", "Pendulum-v1"),
        "spec.exploration.epsilonDecay": ("exploration", {"epsilonDecay": "fast"}),
    }
    for field, (key, value) in cases.items():
        manifest = yaml.safe_load(yaml.safe_dump(base))
        manifest["spec"][key] = value
        path = tmp_path / "bad.yaml"
        path.write_text(yaml.safe_dump(manifest))
        output = tmp_path / f"out-{key}"
        done = subprocess.run([sys.executable, "-m", "kuberl.cli", "run", str(path), "--output", str(output)],
                              capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (field, done.stderr)
        expected = "spec.learner.bogus" if key == "learner" else field
        assert expected in done.stderr, (field, done.stderr)
        assert not output.exists(), "nothing may start for a bad manifest"


def test_kuberl_run_on_mysql_reads_its_summary_through_analytics(tmp_path, mariadb, mysql_password):
    manifest = yaml.safe_load((REPO / "examples" / "cartpole.yaml").read_text())
    manifest["metadata"]["name"] = "budget"
    # Ends on the budget, after a few metrics flushes (1 s apart) have reached the database.
    manifest["spec"]["stop"] = {"maxEnvSteps": 15_000, "targetReturn": 10_000}
    path = tmp_path / "budget.yaml"
    path.write_text(yaml.safe_dump(manifest))
    url = mariadb.url("run_summary")

    done = subprocess.run([sys.executable, "-m", "kuberl.cli", "run", str(path), "--output", str(tmp_path / "run"),
                           "--no-progress", "--database", url], capture_output=True, text=True, timeout=300)

    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]  # unsolved: the budget ran out
    assert "budget: Failed" in done.stdout
    # An unsolved run still leaves its best version, scored as a solve's confirmation would be.
    assert re.search(r"^  result\s+policy version \d+: mean return [\d.]+ over 100 fresh episodes", done.stdout, re.M)
    episodes = int(re.search(r"^  episodes\s+(\d+)", done.stdout, re.M).group(1))
    assert episodes > 0
    assert not (tmp_path / "run" / "analytics.db").exists(), "metrics went to MySQL, not SQLite"
    from kuberl.analytics.core import open_store

    store = open_store(url)
    try:
        _, total = store.query(Query("default/budget", "charts/episodic_return"))
        assert total >= episodes  # the summary was read from this database (more may land after it)
    finally:
        store.close()
    assert mariadb_password_absent_from_logs(tmp_path / "run")


def mariadb_password_absent_from_logs(run_dir) -> bool:
    from tests.mariadb import PASSWORD

    return all(PASSWORD not in log.read_text() for log in run_dir.glob("*.log"))
