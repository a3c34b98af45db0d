"""The kuberl operator run for real (kopf's KopfRunner) against the emulated API server."""

from __future__ import annotations

import pytest

from kuberl.config import ExperimentConfig
from kuberl.rpc import AlreadyExists, NotFound
from kuberl.v1 import experiment_service_pb2 as exp_pb
from tests.conftest import REPO
from tests.operator.kube_api import (CONFIGMAPS, DEPLOYMENTS, EVENTS, PODS, RLEXPERIMENTS, SERVICES, KubeAPI,
                                     run_operator)

HANDLERS = REPO / "operator" / "kuberl_operator" / "handlers.py"
NS = "research"
ROLES = ("environment", "buffer", "learner")


@pytest.fixture(autouse=True)
def operator_environment(monkeypatch):
    monkeypatch.setenv("KUBERL_OPERATOR_TIMER_SECONDS", "0.3")
    monkeypatch.setenv("KUBERL_IMAGE", "registry.example/kuberl:9.9.9")
    # Unreachable peers answer at once (connection refused), as a cluster without them would.
    monkeypatch.setenv("KUBERL_ANALYTICS_ADDRESS", "127.0.0.1:9")
    monkeypatch.setenv("KUBERL_POLICY_ADDRESS", "127.0.0.1:9")


def rlexperiment(name: str, spec: dict) -> dict:
    return {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment",
            "metadata": {"name": name, "namespace": NS}, "spec": spec}


def replicas(kube: KubeAPI, name: str) -> dict[str, int]:
    return {role: kube.get(DEPLOYMENTS, f"{name}-{role}", NS)["spec"]["replicas"] for role in ROLES}


def status(kube: KubeAPI, name: str) -> dict:
    return kube.get(RLEXPERIMENTS, name, NS).get("status") or {}


def conditions(kube: KubeAPI, name: str) -> dict[str, dict]:
    return {c["type"]: c for c in status(kube, name).get("conditions", [])}


def mark_ready(kube: KubeAPI, name: str) -> None:
    """No controllers run here: play the Deployment controller's part."""
    for role in ROLES:
        wanted = kube.get(DEPLOYMENTS, f"{name}-{role}", NS)["spec"]["replicas"]
        kube.patch(DEPLOYMENTS, f"{name}-{role}", {"status": {"replicas": wanted, "readyReplicas": wanted}}, NS,
                   subresource="status")


def test_an_experiment_becomes_its_children_and_follows_its_spec(kube_api: KubeAPI):
    kube = kube_api
    kube.create_namespace(NS)
    with run_operator(HANDLERS) as runner:
        created = kube.create(RLEXPERIMENTS, rlexperiment("cartpole", {"environment": {"replicas": 2},
                                                                        "buffer": {"replicas": 3}}), NS)
        uid = created["metadata"]["uid"]
        for role in ROLES:
            deployment = kube.wait_for_object(DEPLOYMENTS, f"cartpole-{role}", NS)
            service = kube.wait_for_object(SERVICES, f"cartpole-{role}", NS)
            for child in (deployment, service):
                (owner,) = child["metadata"]["ownerReferences"]
                assert (owner["uid"], owner["kind"], owner["controller"]) == (uid, "RLExperiment", True)
            assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
            (container,) = deployment["spec"]["template"]["spec"]["containers"]
            assert container["image"] == "registry.example/kuberl:9.9.9"
        config = kube.wait_for_object(CONFIGMAPS, "cartpole-config", NS)
        assert "name: cartpole" in config["data"]["experiment.yaml"]
        assert replicas(kube, "cartpole") == {"environment": 2, "buffer": 3, "learner": 1}

        # Status from the first visit: every condition, observedGeneration, the scale selector.
        kube.wait_for(lambda: status(kube, "cartpole").get("observedGeneration") == 1, message="status")
        first = status(kube, "cartpole")
        assert first["phase"] == "Pending"
        assert set(conditions(kube, "cartpole")) == {"Ready", "Suspended", "Succeeded", "Failed"}
        assert first["environment"]["selector"] == "kuberl.dev/experiment=cartpole,app.kubernetes.io/component=environment"
        mark_ready(kube, "cartpole")
        kube.wait_for(lambda: conditions(kube, "cartpole")["Ready"]["status"] == "True", message="Ready")
        assert status(kube, "cartpole")["buffer"] == {**first["buffer"], "readyReplicas": 3}

        # Scaling: the Deployment follows, nothing else is touched.
        learner_version = kube.get(DEPLOYMENTS, "cartpole-learner", NS)["metadata"]["resourceVersion"]
        kube.patch(RLEXPERIMENTS, "cartpole", {"spec": {"environment": {"replicas": 5}}}, NS)
        kube.wait_for(lambda: replicas(kube, "cartpole")["environment"] == 5, message="scale up")
        kube.wait_for(lambda: status(kube, "cartpole").get("observedGeneration") == 2, message="generation 2")
        assert kube.get(DEPLOYMENTS, "cartpole-learner", NS)["metadata"]["resourceVersion"] == learner_version

        # A deleted child comes back.
        kube.delete(DEPLOYMENTS, "cartpole-buffer", NS)
        kube.wait_for(lambda: kube.get_or_none(DEPLOYMENTS, "cartpole-buffer", NS) is not None, message="recreated")
        assert replicas(kube, "cartpole")["buffer"] == 3

        # Suspend: actors and learner at zero, shards kept; resume brings them back.
        kube.patch(RLEXPERIMENTS, "cartpole", {"spec": {"suspend": True}}, NS)
        kube.wait_for(lambda: replicas(kube, "cartpole") == {"environment": 0, "buffer": 3, "learner": 0},
                      message="suspended")
        kube.wait_for(lambda: status(kube, "cartpole").get("phase") == "Suspended", message="phase Suspended")
        kube.patch(RLEXPERIMENTS, "cartpole", {"spec": {"suspend": False}}, NS)
        kube.wait_for(lambda: replicas(kube, "cartpole") == {"environment": 5, "buffer": 3, "learner": 1},
                      message="resumed")
        kube.wait_for(lambda: conditions(kube, "cartpole")["Suspended"]["status"] == "False", message="resumed")
    assert runner.exception is None


def test_a_restarted_operator_changes_nothing_that_is_right(kube_api: KubeAPI):
    kube = kube_api
    kube.create_namespace(NS)
    kube.create(RLEXPERIMENTS, rlexperiment("steady", {"buffer": {"replicas": 2}}), NS)
    with run_operator(HANDLERS) as runner:
        kube.wait_for_object(DEPLOYMENTS, "steady-learner", NS)
        kube.wait_for(lambda: status(kube, "steady").get("observedGeneration") == 1, message="status")
    assert runner.exception is None

    def versions() -> dict[str, str]:
        objects = [*kube.list(DEPLOYMENTS, NS), *kube.list(SERVICES, NS), *kube.list(CONFIGMAPS, NS),
                   *kube.list(RLEXPERIMENTS, NS)]
        return {f"{o['kind']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"] for o in objects}

    before = versions()
    with run_operator(HANDLERS) as runner:
        kube.wait_for(lambda: kube.watchers(RLEXPERIMENTS) > 0, message="watching")
        import time

        time.sleep(2.0)  # several timer rounds and the resume handler
    assert runner.exception is None
    assert versions() == before


def test_an_invalid_spec_is_refused_with_the_field_and_creates_nothing(kube_api: KubeAPI):
    kube = kube_api
    kube.create_namespace(NS)
    with run_operator(HANDLERS) as runner:
        kube.create(RLEXPERIMENTS, rlexperiment("broken", {"buffer": {"replicas": 0}}), NS)
        events = kube.wait_for(lambda: [e for e in kube.list(EVENTS, NS)
                                        if "spec.buffer.replicas" in e.get("message", "")], message="an event")
        assert events[0]["involvedObject"]["name"] == "broken" and events[0]["reason"] == "InvalidSpec"
        kube.wait_for(lambda: status(kube, "broken").get("phase") == "Failed", message="phase Failed")
        failed = conditions(kube, "broken")["Failed"]
        assert failed["reason"] == "InvalidSpec" and "spec.buffer.replicas" in failed["message"]
        assert kube.list(DEPLOYMENTS, NS) == [] and kube.list(CONFIGMAPS, NS) == []

        # Fixed: the next generation is reconciled and the failure goes away.
        kube.patch(RLEXPERIMENTS, "broken", {"spec": {"buffer": {"replicas": 1}}}, NS)
        kube.wait_for_object(DEPLOYMENTS, "broken-buffer", NS)
        kube.wait_for(lambda: status(kube, "broken").get("phase") == "Pending", message="no longer Failed")
    assert runner.exception is None


def test_a_finished_experiment_scales_down_and_goes_after_its_ttl(kube_api: KubeAPI):
    kube = kube_api
    kube.create_namespace(NS)
    kube.create(RLEXPERIMENTS, rlexperiment("done", {"environment": {"replicas": 2}, "ttlSecondsAfterFinished": 1}),
                NS)
    kube.patch(RLEXPERIMENTS, "done", {"status": {"phase": "Succeeded", "conditions": [
        {"type": "Succeeded", "status": "True", "reason": "TargetReturnReached", "message": "solved",
         "lastTransitionTime": "2026-11-24T12:00:00Z"}]}}, NS, subresource="status")
    with run_operator(HANDLERS) as runner:
        kube.wait_for(lambda: status(kube, "done").get("completionTime"), message="completion time")
        assert status(kube, "done")["phase"] == "Succeeded"
        kube.wait_gone(RLEXPERIMENTS, "done", NS, timeout=30)
        kube.wait_for(lambda: kube.list(DEPLOYMENTS, NS) == [], message="children collected with their owner")
    assert runner.exception is None


def test_the_experiment_api_keeps_experiments_as_rlexperiments(kube_api: KubeAPI):
    kube = kube_api
    kube.create_namespace(NS)
    from kuberl.experiment.kubernetes import ClusterExperiments

    api = ClusterExperiments(NS)
    config = ExperimentConfig().replace(environment={"replicas": 3})
    assert api.start_experiment("from-api", config) == ("from-api", [])
    stored = kube.get(RLEXPERIMENTS, "from-api", NS)
    assert stored["spec"]["environment"]["replicas"] == 3 and stored["spec"]["envId"] == "CartPole-v1"
    with pytest.raises(AlreadyExists):
        api.start_experiment("from-api", config)
    with pytest.raises(ValueError, match="experiment_id"):
        api.start_experiment("Not_A_DNS_Label", config)
    kube.patch(RLEXPERIMENTS, "from-api", {"status": {"phase": "Running", "envSteps": 1234, "meanReturn": 88.5}}, NS,
               subresource="status")
    status_msg = api.experiment_status("from-api")
    assert (status_msg.phase, status_msg.env_steps, status_msg.mean_return) == (
        exp_pb.EXPERIMENT_PHASE_RUNNING, 1234, 88.5)
    assert [s.experiment_id for s in api.list_statuses()] == ["from-api"]
    api.stop_experiment("from-api")
    assert kube.get(RLEXPERIMENTS, "from-api", NS)["spec"]["suspend"] is True
    with pytest.raises(NotFound):
        api.experiment_status("nope")


def test_a_crash_looping_learner_fails_the_run_and_stops_it(kube_api: KubeAPI):
    kube = kube_api
    kube.create_namespace(NS)
    with run_operator(HANDLERS) as runner:
        kube.create(RLEXPERIMENTS, rlexperiment("flaky", {"environment": {"replicas": 2}}), NS)
        template = kube.wait_for_object(DEPLOYMENTS, "flaky-learner", NS)["spec"]["template"]
        # What the kubelet would report for a learner that keeps dying at start.
        kube.create(PODS, {"metadata": {"name": "flaky-learner-abc", "namespace": NS,
                                        "labels": template["metadata"]["labels"]},
                           "spec": {"containers": [{"name": "learner", "image": "kuberl"}]}}, NS)
        kube.patch(PODS, "flaky-learner-abc", {"status": {"containerStatuses": [{
            "name": "learner", "image": "kuberl", "imageID": "", "ready": False, "restartCount": 12,
            "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s"}}}]}}, NS,
            subresource="status")
        kube.wait_for(lambda: status(kube, "flaky").get("phase") == "Failed", message="phase Failed")
        assert conditions(kube, "flaky")["Failed"]["reason"] == "CrashLoop"
        assert "learner crash-looped 12 times" in status(kube, "flaky")["message"]
        kube.wait_for(lambda: replicas(kube, "flaky") == {"environment": 0, "buffer": 1, "learner": 0},
                      message="actors and learner stopped")
    assert runner.exception is None
