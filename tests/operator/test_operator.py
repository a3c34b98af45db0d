"""The operator (kopf, in this process, as the chart's ServiceAccount) against a real API server:
real defaulting and validation, real Deployments and a StatefulSet whose pods run the project's
image, real claims, real garbage collection. The learner is out of the operator's reach from here (its DNS name is the
cluster's), so these runs never reach Running: the end-to-end suite covers training."""

from __future__ import annotations

import json
import time

import pytest
import yaml

from kuberl.config import ExperimentConfig, parse_manifest, scoped_experiment_id, to_spec
from kuberl.rpc import AlreadyExists, NotFound
from kuberl.v1 import experiment_service_pb2 as exp_pb
from tests.kube import (CONFIGMAPS, DEPLOYMENTS, EVENTS, PODS, RLEXPERIMENTS, SECRETS, SERVICES, STATEFULSETS, Objects,
                        TestCluster)
from tests.waiting import wait_for
from tests.operator.conftest import IDENTITY_NAMESPACE, run_operator

ROLES = ("environment", "buffer", "learner")
WORKLOADS = {"environment": DEPLOYMENTS, "buffer": STATEFULSETS, "learner": DEPLOYMENTS}
SMALL = {"requests": {"cpu": "10m", "memory": "64Mi"}, "limits": {"memory": "512Mi"}}


@pytest.fixture
def settings(cluster_image: str) -> dict[str, str]:
    """The operator's environment as the chart sets it, with peers that refuse at once."""
    return {"KUBERL_OPERATOR_TIMER_SECONDS": "0.5", "KUBERL_IMAGE": cluster_image,
            "KUBERL_IMAGE_PULL_POLICY": "Never", "KUBERL_ANALYTICS_ADDRESS": "127.0.0.1:9",
            "KUBERL_POLICY_ADDRESS": "127.0.0.1:9", "KUBERL_CHILD_RESOURCES": json.dumps(dict.fromkeys(ROLES, SMALL)),
            "KUBERL_CRASH_LOOP_RESTART_LIMIT": "2"}


def rlexperiment(name: str, namespace: str, spec: dict) -> dict:
    return {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment",
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def replicas(objects: Objects, name: str, namespace: str) -> dict[str, int | None]:
    found = {role: objects.get(WORKLOADS[role], f"{name}-{role}", namespace) for role in ROLES}
    return {role: d["spec"]["replicas"] if d else None for role, d in found.items()}


def status(objects: Objects, name: str, namespace: str) -> dict:
    return (objects.get(RLEXPERIMENTS, name, namespace) or {}).get("status") or {}


def conditions(objects: Objects, name: str, namespace: str) -> dict[str, dict]:
    return {c["type"]: c for c in status(objects, name, namespace).get("conditions", [])}


def test_an_experiment_becomes_its_children_and_follows_its_spec(kube_cluster: TestCluster, objects: Objects,
                                                                identities, settings, namespace: str):
    with run_operator(identities["operator"], settings) as runner:
        created = objects.create(RLEXPERIMENTS, rlexperiment("cartpole", namespace, {
            "environment": {"replicas": 2, "envsPerReplica": 2}, "buffer": {"replicas": 2}}), namespace)
        uid = created["metadata"]["uid"]
        # The API server defaulted every field the request left out, as the config model does.
        expected = to_spec(ExperimentConfig().replace(environment={"replicas": 2, "envs_per_replica": 2},
                                                      buffer={"replicas": 2}))
        assert {key: created["spec"][key] for key in expected} == expected
        for role in ROLES:
            deployment = wait_for(lambda: objects.get(WORKLOADS[role], f"cartpole-{role}", namespace), 30, role)
            service = objects.get(SERVICES, f"cartpole-{role}", namespace)
            for child in (deployment, service):
                (owner,) = child["metadata"]["ownerReferences"]
                assert (owner["uid"], owner["kind"], owner["controller"]) == (uid, "RLExperiment", True)
            assert service["spec"]["clusterIP"] == "None" and service["spec"]["publishNotReadyAddresses"]
        config = objects.get(CONFIGMAPS, "cartpole-config", namespace)
        # The roles read this file: they know the experiment by its namespace and this object's uid,
        # so a cartpole in another namespace, or this one re-created, shares nothing with it.
        served = parse_manifest(yaml.safe_load(config["data"]["experiment.yaml"]))
        assert served.experiment_id == scoped_experiment_id(namespace, "cartpole", uid) == \
            f"{namespace}/cartpole#{uid.replace('-', '')[:8]}"
        assert replicas(objects, "cartpole", namespace) == {"environment": 2, "buffer": 2, "learner": 1}

        # Status from the first visit, then Ready once the kubelet says every pod is.
        wait_for(lambda: status(objects, "cartpole", namespace).get("observedGeneration") == 1, 30, "status")
        assert set(conditions(objects, "cartpole", namespace)) == {"Ready", "Suspended", "Succeeded", "Failed"}
        assert status(objects, "cartpole", namespace)["environment"]["selector"] == (
            "kuberl.dev/experiment=cartpole,app.kubernetes.io/component=environment")
        wait_for(lambda: conditions(objects, "cartpole", namespace)["Ready"]["status"] == "True", 180, "Ready")
        assert status(objects, "cartpole", namespace)["buffer"]["readyReplicas"] == 2

        # `kubectl scale rlx` (the scale subresource): only the actors' Deployment changes.
        learner_generation = objects.get(DEPLOYMENTS, "cartpole-learner", namespace)["metadata"]["generation"]
        kube_cluster.kubectl("scale", "rlx", "cartpole", "--replicas=3", namespace=namespace)
        wait_for(lambda: replicas(objects, "cartpole", namespace)["environment"] == 3, 30, "scale up")
        wait_for(lambda: status(objects, "cartpole", namespace).get("observedGeneration") == 2, 30, "generation 2")
        assert objects.get(DEPLOYMENTS, "cartpole-learner", namespace)["metadata"]["generation"] == learner_generation
        scale = json.loads(kube_cluster.kubectl("get", "--raw", f"/apis/kuberl.dev/v1alpha1/namespaces/{namespace}"
                                                "/rlexperiments/cartpole/scale").stdout)
        assert scale["spec"]["replicas"] == 3
        assert scale["status"]["selector"] == "kuberl.dev/experiment=cartpole,app.kubernetes.io/component=environment"

        # A deleted child comes back; someone's `kubectl scale deployment` is undone.
        objects.delete(STATEFULSETS, "cartpole-buffer", namespace)
        wait_for(lambda: replicas(objects, "cartpole", namespace)["buffer"] == 2, 30, "the buffer recreated")
        objects.patch(DEPLOYMENTS, "cartpole-learner", {"spec": {"replicas": 4}}, namespace)
        wait_for(lambda: replicas(objects, "cartpole", namespace)["learner"] == 1, 30, "one learner again")

        # Suspend: actors and learner at zero, shards kept; resume brings them back.
        objects.patch(RLEXPERIMENTS, "cartpole", {"spec": {"suspend": True}}, namespace)
        wait_for(lambda: replicas(objects, "cartpole", namespace) == {"environment": 0, "buffer": 2, "learner": 0},
                 30, "suspended")
        wait_for(lambda: status(objects, "cartpole", namespace).get("phase") == "Suspended", 30, "phase Suspended")
        objects.patch(RLEXPERIMENTS, "cartpole", {"spec": {"suspend": False}}, namespace)
        wait_for(lambda: replicas(objects, "cartpole", namespace) == {"environment": 3, "buffer": 2, "learner": 1},
                 30, "resumed")
        wait_for(lambda: conditions(objects, "cartpole", namespace)["Suspended"]["status"] == "False", 30, "resumed")

        # Stop is an end: Stopped, actors and learner at zero for good, shards (and results) kept.
        objects.patch(RLEXPERIMENTS, "cartpole", {"spec": {"stopped": True}}, namespace)
        wait_for(lambda: status(objects, "cartpole", namespace).get("phase") == "Stopped", 30, "phase Stopped")
        wait_for(lambda: replicas(objects, "cartpole", namespace) == {"environment": 0, "buffer": 2, "learner": 0},
                 30, "stopped")
        assert conditions(objects, "cartpole", namespace)["Succeeded"]["reason"] == "StoppedByUser"
        objects.patch(RLEXPERIMENTS, "cartpole", {"spec": {"stopped": False}}, namespace)
        time.sleep(2)  # several visits
        assert status(objects, "cartpole", namespace)["phase"] == "Stopped"
        assert replicas(objects, "cartpole", namespace)["environment"] == 0

        # `kubectl describe rlx` tells the story: each phase and condition change is an Event.
        told = wait_for(lambda: (reasons := {e["reason"] for e in objects.list(EVENTS, namespace)
                                             if e["involvedObject"].get("name") == "cartpole"})
                        >= {"PhasePending", "PhaseSuspended", "SuspendedBySpec", "NotSuspended", "PhaseStopped"}
                        and reasons, 30, "the experiment's events")
        assert "StoppedByUser" in told or "PhaseStopped" in told
    assert runner.exception is None
    # No finalizer: with the operator gone, the experiment can still be deleted.
    assert not objects.get(RLEXPERIMENTS, "cartpole", namespace)["metadata"].get("finalizers")
    kube_cluster.kubectl("delete", "rlx", "cartpole", "--timeout=30s", namespace=namespace)
    wait_for(lambda: not objects.list(DEPLOYMENTS, namespace) and not objects.list(STATEFULSETS, namespace), 60,
             "the garbage collector to delete the children")


def test_a_restarted_operator_changes_nothing_that_is_right(objects: Objects, identities, settings, namespace: str):
    objects.create(RLEXPERIMENTS, rlexperiment("steady", namespace, {"buffer": {"replicas": 2},
                                                                    "environment": {"envsPerReplica": 2}}), namespace)
    with run_operator(identities["operator"], settings) as runner:
        wait_for(lambda: conditions(objects, "steady", namespace).get("Ready", {}).get("status") == "True", 180,
                 "Ready")
    assert runner.exception is None

    def written_by_the_operator() -> dict[str, str]:
        # Deployments' resourceVersions move with their status (the Deployment controller);
        # their generation moves only with a spec change.
        kept = {f"{kind[1]}/{d['metadata']['name']}": d["metadata"]["generation"]
                for kind in (DEPLOYMENTS, STATEFULSETS) for d in objects.list(kind, namespace)}
        for kind in (SERVICES, CONFIGMAPS, RLEXPERIMENTS):
            kept.update({f"{kind[1]}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
                         for o in objects.list(kind, namespace)})
        # What was written, so that a failure says which field moved.
        experiment = objects.get(RLEXPERIMENTS, "steady", namespace)
        kept["RLExperiment/steady written"] = {"annotations": experiment["metadata"].get("annotations"),
                                               "status": experiment.get("status")}
        return kept

    before = written_by_the_operator()
    with run_operator(identities["operator"], settings) as runner:
        time.sleep(4.0)  # the resume handler and several observation rounds
    assert runner.exception is None
    assert written_by_the_operator() == before


def test_a_child_name_held_by_someone_else_is_left_alone(objects: Objects, identities, settings, namespace: str):
    theirs = objects.create(CONFIGMAPS, {"apiVersion": "v1", "kind": "ConfigMap",
                                         "metadata": {"name": "taken-config", "namespace": namespace},
                                         "data": {"mine": "yes"}}, namespace)
    with run_operator(identities["operator"], settings) as runner:
        objects.create(RLEXPERIMENTS, rlexperiment("taken", namespace, {}), namespace)
        wait_for(lambda: objects.get(DEPLOYMENTS, "taken-learner", namespace), 30, "the other children")
        events = wait_for(lambda: [e for e in objects.list(EVENTS, namespace) if e.get("reason") == "ChildNameTaken"],
                          30, "a ChildNameTaken event")
        assert "ConfigMap taken-config" in events[0]["message"]
        assert events[0]["involvedObject"]["name"] == "taken"
        time.sleep(2)  # several more visits: still one event
        assert len([e for e in objects.list(EVENTS, namespace) if e.get("reason") == "ChildNameTaken"]) == 1
    assert runner.exception is None
    after = objects.get(CONFIGMAPS, "taken-config", namespace)
    assert after["data"] == {"mine": "yes"} and after["metadata"]["resourceVersion"] == theirs["metadata"]["resourceVersion"]
    assert not after["metadata"].get("ownerReferences")


def test_a_finished_experiment_scales_down_and_goes_after_its_ttl(objects: Objects, identities, settings,
                                                                  namespace: str):
    objects.create(RLEXPERIMENTS, rlexperiment("done", namespace, {"environment": {"replicas": 2},
                                                                   "ttlSecondsAfterFinished": 3}), namespace)
    # What a finished run leaves in its status (the end-to-end suite reaches it by training).
    objects.patch(RLEXPERIMENTS, "done", {"status": {"phase": "Succeeded", "conditions": [
        {"type": "Succeeded", "status": "True", "reason": "TargetReturnReached", "message": "solved",
         "lastTransitionTime": "2026-11-24T12:00:00Z"}]}}, namespace, subresource="status")
    with run_operator(identities["operator"], settings) as runner:
        wait_for(lambda: status(objects, "done", namespace).get("completionTime"), 30, "completion time")
        assert status(objects, "done", namespace)["phase"] == "Succeeded"
        assert replicas(objects, "done", namespace) == {"environment": 0, "buffer": 1, "learner": 0}
        wait_for(lambda: objects.get(RLEXPERIMENTS, "done", namespace) is None, 60, "the TTL to delete it")
        wait_for(lambda: not objects.list(DEPLOYMENTS, namespace) and not objects.list(STATEFULSETS, namespace)
                 and not objects.list(SERVICES, namespace), 60, "the garbage collector to delete its children")
    assert runner.exception is None


def test_a_crash_looping_role_fails_the_run_and_stops_it(objects: Objects, identities, settings, base_image: str,
                                                         kube_cluster: TestCluster, namespace: str):
    # The base image has no `kuberl`: every container exits at once, and the kubelet backs off.
    kube_cluster.load_image(base_image)
    with run_operator(identities["operator"], {**settings, "KUBERL_IMAGE": base_image}) as runner:
        objects.create(RLEXPERIMENTS, rlexperiment("flaky", namespace, {"environment": {"replicas": 2}}), namespace)
        wait_for(lambda: "crash-looping" in conditions(objects, "flaky", namespace).get("Ready", {}).get("message", ""),
                 120, "Ready to name the crash loop")
        wait_for(lambda: status(objects, "flaky", namespace).get("phase") == "Failed", 180, "phase Failed")
        assert conditions(objects, "flaky", namespace)["Failed"]["reason"] == "CrashLoop"
        assert "crash-looped" in status(objects, "flaky", namespace)["message"]
        wait_for(lambda: replicas(objects, "flaky", namespace) == {"environment": 0, "buffer": 1, "learner": 0},
                 30, "actors and learner stopped")
    assert runner.exception is None


def test_the_experiment_api_keeps_experiments_as_rlexperiments(objects: Objects, identities,
                                                               monkeypatch: pytest.MonkeyPatch):
    from kubernetes.client.exceptions import ApiException

    from kuberl.experiment.kubernetes import ClusterExperiments

    # As the chart's experiment-API ServiceAccount: its Role is in the release namespace only.
    monkeypatch.setenv("KUBECONFIG", str(identities["experiment"]))
    api = ClusterExperiments(IDENTITY_NAMESPACE)
    config = ExperimentConfig().replace(environment={"replicas": 3})
    assert api.start_experiment("from-api", config) == ("from-api", [])
    try:
        stored = objects.get(RLEXPERIMENTS, "from-api", IDENTITY_NAMESPACE)
        assert stored["spec"]["environment"]["replicas"] == 3 and stored["spec"]["envId"] == "CartPole-v1"
        with pytest.raises(AlreadyExists):
            api.start_experiment("from-api", config)
        with pytest.raises(ValueError, match="experiment_id"):
            api.start_experiment("Not_A_DNS_Label", config)
        objects.patch(RLEXPERIMENTS, "from-api", {"status": {"phase": "Running", "envSteps": 1234,
                                                             "meanReturn": 88.5}}, IDENTITY_NAMESPACE,
                      subresource="status")
        status_msg = api.experiment_status("from-api")
        assert (status_msg.phase, status_msg.env_steps, status_msg.mean_return) == (
            exp_pb.EXPERIMENT_PHASE_RUNNING, 1234, 88.5)
        assert [s.experiment_id for s in api.list_statuses()] == ["from-api"]
        api.stop_experiment("from-api")
        stored = objects.get(RLEXPERIMENTS, "from-api", IDENTITY_NAMESPACE)["spec"]
        assert stored["stopped"] is True and stored["suspend"] is False  # an end, not a pause
        with pytest.raises(NotFound):
            api.experiment_status("nope")
        # RBAC holds: the API may not delete experiments, nor touch another namespace.
        with pytest.raises(ApiException) as denied:
            api.api.delete_namespaced_custom_object("kuberl.dev", "v1alpha1", IDENTITY_NAMESPACE, "rlexperiments",
                                                    "from-api")
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied:
            api.api.list_namespaced_custom_object("kuberl.dev", "v1alpha1", "default", "rlexperiments")
        assert denied.value.status == 403
    finally:
        objects.delete(RLEXPERIMENTS, "from-api", IDENTITY_NAMESPACE)


def test_with_the_charts_ca_each_role_gets_a_certificate_naming_its_experiment(
        objects: Objects, identities, settings, namespace: str, tmp_path):
    import base64

    from cryptography import x509

    from kuberl.pki import make_authority
    from kuberl.security import Identity, certificate_identity

    ca = make_authority(tmp_path, "tls", "test CA")  # as the chart's CA Secret mounts: tls.crt, tls.key
    created = objects.create(RLEXPERIMENTS, rlexperiment("secure", namespace, {"environment": {"envsPerReplica": 2}}),
                             namespace)
    experiment_id = scoped_experiment_id(namespace, "secure", created["metadata"]["uid"])
    with run_operator(identities["operator"], {**settings, "KUBERL_CA_DIR": str(tmp_path)}) as runner:
        # Pods serving mutual TLS come Ready: the kubelet probes their plaintext health port.
        wait_for(lambda: conditions(objects, "secure", namespace).get("Ready", {}).get("status") == "True", 180,
                 "Ready")
        for role in ROLES:
            secret = objects.get(SECRETS, f"secure-{role}-tls", namespace)
            (owner,) = secret["metadata"]["ownerReferences"]
            assert owner["uid"] == created["metadata"]["uid"]
            cert = x509.load_pem_x509_certificate(base64.b64decode(secret["data"]["tls.crt"]))
            assert cert.issuer == ca.certificate.subject
            assert certificate_identity(cert) == Identity(role, experiment_id)
            pod = objects.list(PODS, namespace, f"kuberl.dev/experiment=secure,app.kubernetes.io/component={role}")[0]
            args = pod["spec"]["containers"][0]["args"]
            assert "--insecure" not in args and "--tls-dir" in args
        issued = {role: objects.get(SECRETS, f"secure-{role}-tls", namespace)["metadata"]["resourceVersion"]
                  for role in ROLES}
        time.sleep(2)  # more visits: a good certificate is not issued again
        assert issued == {role: objects.get(SECRETS, f"secure-{role}-tls", namespace)["metadata"]["resourceVersion"]
                          for role in ROLES}
    assert runner.exception is None
