"""On a kind cluster: install the chart, run examples/cartpole.yaml to Succeeded, scale the replay
shards of a running experiment and check that the learner samples from every one, uninstall."""

from __future__ import annotations

import json
import subprocess
import time

import pytest
import yaml

from tests.conftest import REPO

NAMESPACE = "kuberl-e2e"
RELEASE = "kuberl"
IMAGE = "kuberl:e2e"


def run(*args: str, timeout: float = 300, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed:\n{done.stdout}\n{done.stderr}")
    return done


def kubectl(*args: str, **kw) -> subprocess.CompletedProcess:
    return run("kubectl", "--namespace", NAMESPACE, *args, **kw)


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(3)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")


def rlx(name: str) -> dict:
    return json.loads(kubectl("get", "rlx", name, "-o", "json").stdout)


@pytest.fixture(scope="module")
def installed(kind_context: str):
    cluster = kind_context.removeprefix("kind-")
    run("docker", "build", "-t", IMAGE, str(REPO), timeout=900)
    run("kind", "load", "docker-image", IMAGE, "--name", cluster, timeout=600)
    run("helm", "upgrade", "--install", RELEASE, str(REPO / "charts" / "kuberl"), "--namespace", NAMESPACE,
        "--create-namespace", "--set", "image.repository=kuberl", "--set", "image.tag=e2e",
        "--set", "image.pullPolicy=Never", "--wait", "--timeout", "10m", timeout=900)
    yield
    kubectl("delete", "rlx", "--all", "--wait=true", timeout=300, check=False)
    run("helm", "uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", timeout=600, check=False)
    run("kubectl", "delete", "namespace", NAMESPACE, "--wait=false", check=False)


def test_helm_test_reaches_the_experiment_api(installed):
    run("helm", "test", RELEASE, "--namespace", NAMESPACE, "--timeout", "5m", timeout=400)


def test_cartpole_example_succeeds(installed):
    kubectl("apply", "-f", str(REPO / "examples" / "cartpole.yaml"))
    status = wait_for(lambda: (rlx("cartpole").get("status") or {}).get("phase") in ("Succeeded", "Failed")
                      and rlx("cartpole")["status"], 1800, "cartpole to finish")
    assert status["phase"] == "Succeeded", status
    assert status["evalReturn"] >= 475
    conditions = {c["type"]: c for c in status["conditions"]}
    assert conditions["Succeeded"]["status"] == "True"
    wait_for(lambda: rlx("cartpole")["status"]["environment"]["readyReplicas"] == 0, 300, "actors at zero")
    printed = kubectl("get", "rlx", "cartpole").stdout
    assert "Succeeded" in printed and "CartPole-v1" in printed


def test_scaling_shards_while_running_reaches_the_learner(installed):
    manifest = yaml.safe_load((REPO / "examples" / "cartpole.yaml").read_text())
    manifest["metadata"]["name"] = "scaling"
    manifest["spec"]["stop"] = {"targetReturn": 100000, "maxEnvSteps": 100000000}
    manifest["spec"]["learner"]["samplesPerInsert"] = 4
    path = REPO / "kuberl-runs" / "e2e-scaling.yaml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(yaml.safe_dump(manifest))
    kubectl("apply", "-f", str(path))
    wait_for(lambda: (rlx("scaling").get("status") or {}).get("phase") == "Running", 600, "scaling to run")
    kubectl("patch", "rlx", "scaling", "--type", "merge", "-p", json.dumps({"spec": {"buffer": {"replicas": 3}}}))
    kubectl("rollout", "status", "deployment/scaling-buffer", "--timeout=300s", timeout=360)

    probe = ("from kuberl.rpc import stub; from kuberl.v1 import learner_service_pb2 as p, "
             "learner_service_pb2_grpc as g; "
             "print(stub(g.LearnerServiceStub, 'localhost:50054').GetLearnerStats("
             "p.GetLearnerStatsRequest(experiment_id='scaling'), timeout=5).stats.shards)")

    def shards_sampled() -> bool:
        done = kubectl("exec", "deploy/scaling-learner", "--", "python", "-c", probe, check=False)
        return done.returncode == 0 and done.stdout.strip() == "3"

    wait_for(shards_sampled, 120, "the learner to sample from all three shards")
    kubectl("patch", "rlx", "scaling", "--type", "merge", "-p", json.dumps({"spec": {"suspend": True}}))
    wait_for(lambda: rlx("scaling")["status"]["phase"] == "Suspended", 120, "suspension")
    deployments = json.loads(kubectl("get", "deployments", "-l", "kuberl.dev/experiment=scaling",
                                     "-o", "json").stdout)["items"]
    replicas = {d["metadata"]["name"]: d["spec"]["replicas"] for d in deployments}
    assert replicas == {"scaling-environment": 0, "scaling-buffer": 3, "scaling-learner": 0}
