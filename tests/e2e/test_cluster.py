"""The system on a real cluster, as users meet it: `helm install --wait` and `helm test`;
`kubectl apply -f examples/cartpole.yaml` to Succeeded; one long experiment (a target it cannot
reach) that carries scaling, suspend and resume, a killed shard, a killed operator and a
`helm upgrade`; a crash-looping experiment; deletion and TTL. After each, the status and the
`kubectl get rlx` columns are checked against what the roles themselves report.

    bash tests/run.sh tests/e2e       # on the local cluster here, or on your kind cluster
"""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from tests.conftest import REPO
from tests.e2e.release import CRASH_LOOP_RESTART_LIMIT, OBSERVATION_SECONDS, RELEASE, Release, helm_values, wait_phase
from tests.waiting import wait_for

pytestmark = pytest.mark.slow
CARTPOLE = REPO / "examples" / "cartpole.yaml"
MARATHON = "marathon"


def apply(release: Release, doc: dict) -> None:
    release.kubectl("apply", "-f", "-", input=yaml.safe_dump(doc))


def assert_columns_tell_the_truth(release: Release, name: str) -> None:
    """Each column `kubectl get rlx` prints is the field it names, in the object it was computed from."""
    cells, obj = release.table_row(name)
    status = obj.get("status") or {}
    expected = {"Phase": status.get("phase"), "Env": obj["spec"]["envId"],
                "Actors": (status.get("environment") or {}).get("readyReplicas"),
                "Shards": (status.get("buffer") or {}).get("readyReplicas"), "Steps": status.get("envSteps"),
                "Return": status.get("meanReturn"), "Eval": status.get("evalReturn"),
                "Result": (status.get("result") or {}).get("meanReturn")}
    shown = {key: cells.get(key) for key in expected}
    assert shown == expected, f"kubectl get rlx {name} shows {shown}, the status holds {expected}"


def assert_status_agrees_with_the_learner(release: Release, name: str) -> None:
    """Status envSteps/updates lie between what the learner said before and after: the status
    read was observed after the first learner read (an observation is at most one interval and
    one visit old)."""
    before = release.learner_stats(name)
    time.sleep(2 * OBSERVATION_SECONDS)
    status = release.status(name)
    after = release.learner_stats(name)
    assert before["env_steps"] <= status["envSteps"] <= after["env_steps"], (before, status, after)
    assert before["updates"] <= status["updates"] <= after["updates"], (before, status, after)
    assert status["policyVersion"] <= after["policy_version"]


def test_helm_install_and_helm_test(release: Release):
    release.cluster.helm("test", RELEASE, "--namespace", release.namespace, "--timeout", "5m")
    pods = release.get("pods", "-l", f"app.kubernetes.io/instance={RELEASE}")["items"]
    roles = {p["metadata"]["labels"]["app.kubernetes.io/component"] for p in pods}
    assert {"operator", "experiment", "policy", "analytics", "mysql"} <= roles
    for pod in pods:
        if pod["metadata"]["labels"]["app.kubernetes.io/component"] != "test":
            assert all(c["ready"] and c["restartCount"] == 0 for c in pod["status"]["containerStatuses"]), pod["metadata"]["name"]


def test_the_cartpole_example_succeeds_then_scales_down_and_goes_after_its_ttl(release: Release, tmp_path):
    started = time.monotonic()
    release.kubectl("apply", "-f", str(CARTPOLE))
    first_transition = None
    while True:
        status = release.status("cartpole")
        if first_transition is None and release.ready_pods("cartpole", "learner"):
            try:
                if release.learner_stats("cartpole")["env_steps"] > 0:
                    first_transition = time.monotonic() - started
            except AssertionError:  # the learner pod is up but not yet serving
                pass
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        assert time.monotonic() - started < 900, f"cartpole did not finish: {status}"
        if status.get("phase") == "Running":
            assert_columns_tell_the_truth(release, "cartpole")
        time.sleep(1)
    solved = time.monotonic() - started
    print(f"\n[e2e] kubectl apply examples/cartpole.yaml -> first transition {first_transition:.1f}s, "
          f"-> Succeeded {solved:.1f}s ({status.get('envSteps')} env steps)")
    assert status["phase"] == "Succeeded", status
    assert status["evalReturn"] >= 475
    # Solved means solved: the result was confirmed over 100 fresh episodes.
    assert status["result"]["meanReturn"] >= 475 and status["result"]["episodes"] == 100, status
    conditions = release.conditions("cartpole")
    assert conditions["Succeeded"]["status"] == "True" and conditions["Succeeded"]["reason"] == "TargetReturnReached"
    assert conditions["Failed"]["status"] == "False"
    wait_for(lambda: not release.pods("cartpole", "environment") and not release.pods("cartpole", "learner"), 120,
             "actors and learner gone")
    assert release.replicas("cartpole") == {"environment": 0, "buffer": 2, "learner": 0}
    wait_for(lambda: release.status("cartpole")["environment"]["readyReplicas"] == 0, 30, "status to show 0 actors")
    assert_columns_tell_the_truth(release, "cartpole")
    assert release.printed("cartpole")["PHASE"] == "Succeeded"
    # Its own NetworkPolicy, accepted by the API server: its pods, from its pods and the operator.
    network = release.get("networkpolicy", "cartpole-network")
    assert network["spec"]["podSelector"] == {"matchLabels": {"kuberl.dev/experiment": "cartpole"}}
    assert network["metadata"]["ownerReferences"][0]["kind"] == "RLExperiment"

    experiment_id = release.experiment_id("cartpole")
    (policy,) = [p["metadata"]["name"] for p in release.get("pods", "-l", "app.kubernetes.io/component=policy")["items"]]
    assert release.probe(policy, "policy", experiment_id)["latest_version"] > 0

    release.kubectl("patch", "rlx", "cartpole", "--type=merge", "-p", json.dumps({"spec": {"ttlSecondsAfterFinished": 3}}))
    wait_for(lambda: not release.get("rlx")["items"], 60, "the TTL to delete cartpole")
    told = {e["reason"] for e in release.get("events", "--field-selector", "involvedObject.name=cartpole")["items"]}
    assert {"PhaseRunning", "TargetReturnReached", "PhaseSucceeded", "TTLExpired"} <= told, told
    # The operator saw it go and the shared policy role let go of its weights.
    wait_for(lambda: release.probe(policy, "policy", experiment_id)["latest_version"] == -1, 30,
             "the policy role to release cartpole's weights")
    # Its result outlives it (the chart's policy.resultRetentionSeconds): listed, and exported by
    # the name its user knows, as the release's reader over a port-forward.
    reader = release.cluster.tls_directory(f"{RELEASE}-reader-tls", release.namespace, tmp_path / "reader")
    with release.cluster.port_forward(f"svc/{RELEASE}-policy", 50056, release.namespace) as local:
        def kuberl(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([sys.executable, "-m", "kuberl.cli", *args, "--policy", f"127.0.0.1:{local}",
                                   "--tls-dir", str(reader)], capture_output=True, text=True, timeout=120,
                                  cwd=tmp_path)

        listed = kuberl("results", "-o", "json")
        assert listed.returncode == 0, listed.stderr
        (kept,) = [r for r in json.loads(listed.stdout) if r["experimentId"] == experiment_id]
        assert kept["envId"] == "CartPole-v1" and kept["releasedAtSeconds"] > 0
        assert kept["version"] == status["result"]["policyVersion"] and kept["evaluation"]["meanReturn"] >= 475
        exported = kuberl("export", f"{release.namespace}/cartpole", "-o", "cartpole.npz")
        assert exported.returncode == 0, exported.stderr
        with np.load(tmp_path / "cartpole.npz", allow_pickle=False) as f:
            assert json.loads(str(f["metadata"]))["policy_version"] == kept["version"]
    wait_for(lambda: not release.get("deployments,statefulsets,services,configmaps,persistentvolumeclaims,"
                                     "networkpolicies", "-l", "kuberl.dev/experiment=cartpole")["items"]
             and not release.pods("cartpole", "buffer"), 120, "its children and the shards' claims to be collected")


@pytest.fixture(scope="module")
def marathon(release: Release) -> Release:
    """A long run: a target no policy reaches, so it trains until deleted."""
    doc = yaml.safe_load(CARTPOLE.read_text())
    doc["metadata"]["name"] = MARATHON
    doc["spec"]["stop"] = {"targetReturn": 100000, "maxEnvSteps": 10**10, "evalIntervalUpdates": 100000}
    doc["spec"]["buffer"]["snapshotIntervalSeconds"] = 2
    doc["spec"]["learner"]["samplesPerInsert"] = 4
    apply(release, doc)
    wait_phase(release, MARATHON, "Running", 300)
    wait_for(lambda: release.status(MARATHON).get("envSteps", 0) > 0, 120, "the first transitions")
    return release


def learner_pod(release: Release) -> dict:
    (pod,) = release.pods(MARATHON, "learner")
    return pod


def test_a_long_run_reports_what_its_learner_reports(marathon: Release):
    assert_status_agrees_with_the_learner(marathon, MARATHON)
    assert_columns_tell_the_truth(marathon, MARATHON)
    assert marathon.conditions(MARATHON)["Ready"]["status"] == "True"


def test_kubectl_scale_rlx_changes_the_actors_not_the_learner(marathon: Release):
    learner = learner_pod(marathon)
    marathon.kubectl("scale", "rlx", MARATHON, "--replicas=3")
    wait_for(lambda: len(marathon.ready_pods(MARATHON, "environment")) == 3, 180, "three ready actors")
    wait_for(lambda: marathon.status(MARATHON)["environment"]["readyReplicas"] == 3, 30, "status: 3 actors")
    assert marathon.printed(MARATHON)["ACTORS"] == "3"
    after = learner_pod(marathon)
    assert after["metadata"]["uid"] == learner["metadata"]["uid"]
    assert after["status"]["containerStatuses"][0]["restartCount"] == 0
    assert_status_agrees_with_the_learner(marathon, MARATHON)


def shard_stats(release: Release) -> dict[str, dict]:
    return {p["metadata"]["name"]: release.stats(p["metadata"]["name"], "buffer", MARATHON)
            for p in release.ready_pods(MARATHON, "buffer")}


def test_shards_scaled_from_two_to_three_are_all_sampled(marathon: Release):
    marathon.kubectl("patch", "rlx", MARATHON, "--type=merge", "-p", json.dumps({"spec": {"buffer": {"replicas": 3}}}))
    wait_for(lambda: len(marathon.ready_pods(MARATHON, "buffer")) == 3, 180, "three ready shards")
    wait_for(lambda: marathon.learner_stats(MARATHON)["shards"] == 3, 60, "the learner to sample three shards")
    before = shard_stats(marathon)
    time.sleep(5)
    after = shard_stats(marathon)
    assert set(after) == set(before) and len(after) == 3
    for pod, stats in after.items():
        assert stats["total_sampled"] > before[pod]["total_sampled"], f"{pod} was not sampled: {before[pod]} {stats}"
        # Every shard got pushes; a new one fills slowly (its inserts wait on its samples).
        assert stats["total_inserted"] > 0, f"{pod} got no pushes"
    wait_for(lambda: marathon.status(MARATHON)["buffer"]["readyReplicas"] == 3, 30, "status: 3 shards")
    assert_columns_tell_the_truth(marathon, MARATHON)


def test_suspend_then_resume_keeps_the_replay(marathon: Release):
    shards = {p["metadata"]["name"]: p["metadata"]["uid"] for p in marathon.pods(MARATHON, "buffer")}
    before = shard_stats(marathon)
    version = marathon.learner_stats(MARATHON)["policy_version"]
    marathon.kubectl("patch", "rlx", MARATHON, "--type=merge", "-p", json.dumps({"spec": {"suspend": True}}))
    wait_phase(marathon, MARATHON, "Suspended", 60)
    wait_for(lambda: not marathon.pods(MARATHON, "environment") and not marathon.pods(MARATHON, "learner"), 120,
             "actors and learner gone")
    assert marathon.replicas(MARATHON) == {"environment": 0, "buffer": 3, "learner": 0}
    assert marathon.conditions(MARATHON)["Suspended"]["status"] == "True"
    wait_for(lambda: marathon.status(MARATHON)["environment"]["readyReplicas"] == 0, 30, "status: no actors")
    assert_columns_tell_the_truth(marathon, MARATHON)
    suspended = shard_stats(marathon)
    for pod, stats in suspended.items():  # the same shards, holding at least what they held
        assert stats["size"] >= before[pod]["size"] and stats["total_inserted"] >= before[pod]["total_inserted"]

    marathon.kubectl("patch", "rlx", MARATHON, "--type=merge", "-p", json.dumps({"spec": {"suspend": False}}))
    wait_phase(marathon, MARATHON, "Running", 180)
    assert {p["metadata"]["name"]: p["metadata"]["uid"] for p in marathon.pods(MARATHON, "buffer")} == shards
    wait_for(lambda: marathon.learner_stats(MARATHON)["policy_version"] > version, 120,
             "the resumed learner to go on from the policy role's newest weights")
    resumed = shard_stats(marathon)
    for pod, stats in resumed.items():
        assert stats["total_inserted"] >= suspended[pod]["total_inserted"]
    assert marathon.conditions(MARATHON)["Suspended"]["status"] == "False"


def test_a_killed_shard_container_comes_back_with_its_data(marathon: Release):
    pod = marathon.ready_pods(MARATHON, "buffer")[0]
    name = pod["metadata"]["name"]
    restarts = pod["status"]["containerStatuses"][0]["restartCount"]
    held = marathon.stats(name, "buffer", MARATHON)
    time.sleep(5)  # more than one snapshot interval (2 s): a snapshot holds at least `held`
    marathon.cluster.kill_container(marathon.get("pod", name), "buffer")
    wait_for(lambda: marathon.get("pod", name)["status"]["containerStatuses"][0]["restartCount"] > restarts, 60,
             "the shard container to restart")
    wait_for(lambda: name in {p["metadata"]["name"] for p in marathon.ready_pods(MARATHON, "buffer")}, 120,
             "the shard to be ready again")
    restored = marathon.stats(name, "buffer", MARATHON)
    # A fresh shard would count from zero; this one restored its snapshot's counters and rows.
    assert restored["total_inserted"] >= held["total_inserted"], (held, restored)
    assert restored["size"] >= min(held["size"], restored["capacity"]), (held, restored)
    wait_for(lambda: marathon.conditions(MARATHON)["Ready"]["status"] == "True", 60, "Ready again")
    assert marathon.status(MARATHON)["phase"] == "Running"


def test_a_deleted_shard_pod_is_rescheduled_onto_its_claim_with_its_data(marathon: Release):
    pod = marathon.ready_pods(MARATHON, "buffer")[0]
    name, uid = pod["metadata"]["name"], pod["metadata"]["uid"]
    held = marathon.stats(name, "buffer", MARATHON)
    time.sleep(5)  # more than one snapshot interval (2 s): a snapshot holds at least `held`
    marathon.kubectl("delete", "pod", name, "--wait=true", "--timeout=60s")  # a drain, an eviction
    wait_for(lambda: [p for p in marathon.ready_pods(MARATHON, "buffer")
                      if p["metadata"]["name"] == name and p["metadata"]["uid"] != uid], 180,
             "a new pod of the same shard, ready")
    restored = marathon.stats(name, "buffer", MARATHON)
    # A new pod (emptyDir would be empty) restored the snapshot on the shard's claim.
    assert restored["total_inserted"] >= held["total_inserted"], (held, restored)
    assert restored["size"] >= min(held["size"], restored["capacity"]), (held, restored)
    claims = marathon.get("persistentvolumeclaims", "-l", f"kuberl.dev/experiment={MARATHON}")["items"]
    assert f"data-{name}" in {c["metadata"]["name"] for c in claims}
    wait_for(lambda: marathon.conditions(MARATHON)["Ready"]["status"] == "True", 60, "Ready again")


def test_every_role_over_a_port_forward_refuses_plaintext_and_answers_hostile_input_deliberately(
        marathon: Release, tmp_path):
    """The shared roles and a running experiment's shard and learner, reached as a person would
    (port-forwards on loopback): no handler for a plaintext client; as the release's reader,
    random bytes and hostile messages to every method get deliberate answers; all healthy after."""
    import grpc
    import numpy as np
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from kuberl import rpc
    from kuberl.security import TlsFiles
    from tests.fuzzing import DELIBERATE, call, hostile, methods

    reader = TlsFiles(marathon.cluster.tls_directory(f"{RELEASE}-reader-tls", marathon.namespace, tmp_path / "reader"))
    shard = marathon.ready_pods(MARATHON, "buffer")[0]["metadata"]["name"]
    targets = [("experiment", f"svc/{RELEASE}-experiment", 50053), ("policy", f"svc/{RELEASE}-policy", 50056),
               ("analytics", f"svc/{RELEASE}-analytics", 50052), ("buffer", f"pod/{shard}", 50051),
               ("learner", f"pod/{learner_pod(marathon)['metadata']['name']}", 50054)]
    rng = np.random.default_rng(5)
    answered: dict[str, int] = {}
    for role, target, port in targets:
        with marathon.cluster.port_forward(target, port, marathon.namespace) as local:
            address = f"127.0.0.1:{local}"
            with grpc.insecure_channel(address) as plaintext, pytest.raises(grpc.RpcError) as refused:
                health_pb2_grpc.HealthStub(plaintext).Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE, role
            with rpc.channel(address, role, reader) as channel:
                for _, name, method in (m for m in methods() if m[0] == role):
                    for payload in [rng.bytes(int(rng.integers(1, 200))) for _ in range(4)] + [
                            hostile(method.input_type, rng).SerializeToString() for _ in range(8)]:
                        code = call(channel, method, payload)
                        assert code in DELIBERATE | {grpc.StatusCode.PERMISSION_DENIED}, (name, code)
                        answered[code.name] = answered.get(code.name, 0) + 1
                reply = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
                assert reply.status == health_pb2.HealthCheckResponse.SERVING, role
    print(f"\n[e2e] fuzz over port-forwards as the reader: {answered}")
    assert answered.get("PERMISSION_DENIED") and answered.get("INVALID_ARGUMENT")
    assert marathon.status(MARATHON)["phase"] == "Running"


def test_every_kuberl_pod_serves_prometheus_metrics(marathon: Release):
    """What a cluster's Prometheus scrapes, through the `metrics` ports the chart and the operator
    name: the experiment's actor, shard and learner pods, the shared roles and the operator."""
    import urllib.request

    from prometheus_client.parser import text_string_to_metric_families

    def scrape(target: str) -> dict[str, list]:
        with marathon.cluster.port_forward(target, 9090, marathon.namespace) as local:
            text = wait_for(lambda: _get(f"http://127.0.0.1:{local}/metrics"), 30, f"{target}/metrics")
        return {family.name: family.samples for family in text_string_to_metric_families(text)}

    def _get(url: str) -> str | None:
        try:
            return urllib.request.urlopen(url, timeout=10).read().decode()
        except OSError:
            return None

    mine = f"{marathon.namespace}/{MARATHON}#"
    pods = {role: marathon.ready_pods(MARATHON, role)[0]["metadata"]["name"]
            for role in ("environment", "buffer", "learner")}
    expected = {f"pod/{pods['environment']}": "kuberl_environment_steps",
                f"pod/{pods['buffer']}": "kuberl_replay_transitions_inserted",
                f"pod/{pods['learner']}": "kuberl_learner_updates"}
    for target, family in expected.items():
        samples = scrape(target)[family]
        assert any(s.labels["experiment"].startswith(mine) and s.value > 0 for s in samples), (target, samples)
    policy = scrape(f"svc/{RELEASE}-policy")
    assert any(s.labels["experiment"].startswith(mine) for s in policy["kuberl_policy_version"])
    assert scrape(f"svc/{RELEASE}-experiment")["grpc_server_handled"]
    # The dashboard, on the experiment pod's loopback: what `kubectl port-forward` reaches.
    with marathon.cluster.port_forward(f"deploy/{RELEASE}-experiment", 8090, marathon.namespace) as local:
        listed = json.loads(wait_for(lambda: _get(f"http://127.0.0.1:{local}/api/experiments"), 30, "the dashboard"))
        assert MARATHON in {row["experimentId"].split("/")[-1].split("#")[0] for row in listed}, listed
        page = _get(f"http://127.0.0.1:{local}/")
        assert page and "uPlot.iife.min.js" in page
    operator = scrape(f"svc/{RELEASE}-operator-metrics")
    assert any(s.labels["outcome"] == "ok" and s.value > 0 for s in operator["kuberl_operator_visits"])
    assert any(s.labels["phase"] == "Running" and s.value >= 1 for s in operator["kuberl_operator_experiments"])


def test_a_deleted_policy_pod_comes_back_with_the_weights_on_its_claim(marathon: Release):
    (policy,) = marathon.get("pods", "-l", "app.kubernetes.io/component=policy")["items"]
    experiment_id = marathon.experiment_id(MARATHON)
    held = marathon.probe(policy["metadata"]["name"], "policy", experiment_id)["latest_version"]
    time.sleep(3)  # more than the flush interval (1 s): the claim holds at least `held`
    marathon.kubectl("delete", "pod", policy["metadata"]["name"], "--wait=true", "--timeout=60s")
    back = wait_for(lambda: [p for p in marathon.get("pods", "-l", "app.kubernetes.io/component=policy")["items"]
                             if p["metadata"]["uid"] != policy["metadata"]["uid"]
                             and all(c["ready"] for c in p["status"].get("containerStatuses") or [{"ready": False}])],
                    180, "a new policy pod, ready")
    assert marathon.probe(back[0]["metadata"]["name"], "policy", experiment_id)["latest_version"] >= held
    wait_for(lambda: marathon.conditions(MARATHON)["Ready"]["status"] == "True", 90, "Ready again")


def _children_generations(release: Release) -> dict[str, int]:
    listed = release.get("deployments,statefulsets,services,configmaps", "-l",
                         f"kuberl.dev/experiment={MARATHON}")["items"]
    return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"].get("generation") or o["metadata"]["resourceVersion"]
            for o in listed}


def test_a_killed_operator_changes_nothing_that_was_right(marathon: Release):
    before = _children_generations(marathon)
    learner = learner_pod(marathon)["metadata"]["uid"]
    (operator,) = marathon.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
    marathon.kubectl("delete", "pod", operator["metadata"]["name"], "--wait=true")
    wait_for(lambda: [p for p in marathon.get("pods", "-l", "app.kubernetes.io/component=operator")["items"]
                      if p["metadata"]["uid"] != operator["metadata"]["uid"] and all(
                          c["ready"] for c in p["status"].get("containerStatuses", []))], 120, "a new operator")
    steps = marathon.status(MARATHON)["envSteps"]
    wait_for(lambda: marathon.status(MARATHON)["envSteps"] > steps, 60, "the new operator to write status")
    time.sleep(2 * OBSERVATION_SECONDS)
    assert _children_generations(marathon) == before
    assert learner_pod(marathon)["metadata"]["uid"] == learner
    assert marathon.status(MARATHON)["phase"] == "Running"
    assert_status_agrees_with_the_learner(marathon, MARATHON)


def test_helm_upgrade_while_it_runs_leaves_it_running(marathon: Release, cluster_image: str, mariadb_image: str):
    learner = learner_pod(marathon)["metadata"]["uid"]
    before = _children_generations(marathon)
    marathon.cluster.helm("upgrade", RELEASE, str(REPO / "charts" / "kuberl"), "--namespace", marathon.namespace,
                          *helm_values(cluster_image, mariadb_image),
                          "--set", "operator.logLevel=DEBUG", "--set", "experiment.resources.requests.cpu=30m",
                          "--wait", "--timeout", "5m")
    steps = marathon.status(MARATHON)["envSteps"]
    wait_for(lambda: marathon.status(MARATHON)["envSteps"] > steps, 90, "training and status to go on")
    assert learner_pod(marathon)["metadata"]["uid"] == learner
    assert _children_generations(marathon) == before
    assert marathon.status(MARATHON)["phase"] == "Running"
    assert_status_agrees_with_the_learner(marathon, MARATHON)
    assert_columns_tell_the_truth(marathon, MARATHON)


def test_deleting_the_experiment_removes_everything_it_owns(marathon: Release):
    marathon.kubectl("delete", "rlx", MARATHON, "--wait=true", "--timeout=60s")
    wait_for(lambda: not marathon.get("deployments,statefulsets,services,configmaps,replicasets,pods,"
                                      "persistentvolumeclaims", "-l", f"kuberl.dev/experiment={MARATHON}")["items"],
             180, "everything it owned gone, the shards' claims too")


def test_a_crash_looping_role_shows_in_ready_and_past_the_cap_fails_the_run(release: Release):
    # No such Gymnasium environment: actors and learner exit at start, again and again.
    apply(release, {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment", "metadata": {"name": "typo"},
                    "spec": {"envId": "CartPoleTypo-v1"}})
    wait_for(lambda: "crash-looping" in release.conditions("typo").get("Ready", {}).get("message", ""), 180,
             "Ready to name the crash loop", interval=1.0)
    assert release.conditions("typo")["Ready"]["status"] == "False"
    status = wait_phase(release, "typo", "Failed", 300)
    failed = release.conditions("typo")["Failed"]
    assert failed["reason"] == "CrashLoop" and "crash-looped" in failed["message"], failed
    assert int(failed["message"].split("crash-looped ")[1].split()[0]) >= CRASH_LOOP_RESTART_LIMIT
    wait_for(lambda: not release.pods("typo", "environment") and not release.pods("typo", "learner"), 120,
             "its actors and learner stopped")
    assert status["completionTime"]
    assert_columns_tell_the_truth(release, "typo")
    release.kubectl("delete", "rlx", "typo", "--wait=true", "--timeout=60s")
