"""The kmock-based API harness (kube_api.py), proven with a real kopf operator (demo_operator.py).

The first test runs the demo operator with kopf.testing.KopfRunner against the emulator and
drives it through the official kubernetes client; the others pin the server behaviour the
harness adds on top of kmock, so that operator tests can rely on it.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import kubernetes
import pytest
from kubernetes.client.exceptions import ApiException

from tests.operator.kube_api import (
    CONFIGMAPS,
    CRDS,
    RLEXPERIMENTS,
    KubeAPI,
    run_operator,
)

DEMO_OPERATOR = Path(__file__).with_name("demo_operator.py")
OWNER_LABEL = "kuberl.dev/experiment"


def experiment(name: str, replicas: int = 2, namespace: str = "default") -> dict:
    return {
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"environment": {"name": "CartPole-v1", "replicas": replicas}},
    }


def status_of(kube: KubeAPI, name: str) -> dict:
    return kube.get(RLEXPERIMENTS, name).get("status", {})


# --------------------------------------------------------------------------- the demo operator


def test_demo_operator_reconciles_rlexperiments(kube_api: KubeAPI) -> None:
    kube = kube_api
    with run_operator(DEMO_OPERATOR) as runner:
        kube.wait_for(lambda: kube.watchers(RLEXPERIMENTS) > 0, message="kopf to watch rlexperiments")

        # Create: a ConfigMap owned by the CR appears, the status subresource is written.
        created = kube.create(RLEXPERIMENTS, experiment("exp1", replicas=2))
        uid = created["metadata"]["uid"]
        cm = kube.wait_for_object(CONFIGMAPS, "exp1-env")
        assert cm["metadata"]["ownerReferences"] == [{
            "apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment", "name": "exp1", "uid": uid,
            "controller": True, "blockOwnerDeletion": True,
        }]
        assert cm["data"] == {"environment": "CartPole-v1", "replicas": "2"}
        assert cm["metadata"]["labels"] == {OWNER_LABEL: "exp1"}
        obj = kube.wait_for_object(RLEXPERIMENTS, "exp1", predicate=lambda o: o.get("status", {}).get("phase") == "Configured"
                                   and o["status"].get("observedGeneration") == 1)
        assert obj["status"]["configMap"] == "exp1-env"
        assert obj["metadata"]["generation"] == 1  # status and kopf's annotations are not spec changes

        # kopf.info() posted a Kubernetes Event about the CR (a generateName'd object).
        events = kube.wait_for(lambda: [e for e in kube.list("v1/events") if e["involvedObject"].get("uid") == uid])
        assert events[0]["reason"] == "Configured"
        assert events[0]["metadata"]["name"].startswith("kopf-event-")

        # Update of spec.environment.replicas: the ConfigMap follows, the timer sees generation 2.
        kube.patch(RLEXPERIMENTS, "exp1", {"spec": {"environment": {"replicas": 5}}})
        kube.wait_for_object(CONFIGMAPS, "exp1-env", predicate=lambda c: c["data"]["replicas"] == "5")
        kube.wait_for(lambda: status_of(kube, "exp1").get("observedGeneration") == 2
                      and status_of(kube, "exp1").get("replicas") == 5, message="observedGeneration 2")

        # The status went through the subresource: kopf split its patches, the main one has none.
        log = kube.request_log()
        assert ("PATCH", "/apis/kuberl.dev/v1alpha1/namespaces/default/rlexperiments/exp1/status") in log
        assert not [entry for entry in log if entry[0] == "PUT"]

        # Delete the ConfigMap, "touch" the CR (an annotation): the reconcile handler recreates it.
        kube.delete(CONFIGMAPS, "exp1-env")
        kube.wait_gone(CONFIGMAPS, "exp1-env")
        kube.patch(RLEXPERIMENTS, "exp1", {"metadata": {"annotations": {"kuberl.dev/touched": str(time.time())}}})
        recreated = kube.wait_for_object(CONFIGMAPS, "exp1-env")
        assert recreated["metadata"]["uid"] != cm["metadata"]["uid"]
        assert recreated["metadata"]["ownerReferences"][0]["uid"] == uid
        assert recreated["data"]["replicas"] == "5"
        kube.wait_for(lambda: status_of(kube, "exp1").get("recreations") == 1)
        assert kube.get(RLEXPERIMENTS, "exp1")["metadata"]["generation"] == 2  # annotations only

        # Delete the CR: kopf releases its finalizer, the emulated GC removes the owned ConfigMap.
        assert kube.get(RLEXPERIMENTS, "exp1")["metadata"]["finalizers"]  # kopf's (timers need it)
        kube.delete(RLEXPERIMENTS, "exp1")
        kube.wait_gone(RLEXPERIMENTS, "exp1")
        kube.wait_gone(CONFIGMAPS, "exp1-env")

    assert runner.exception is None
    assert runner.exit_code == 0
    assert "Handler 'create_fn' succeeded" in runner.output
    assert "Handler 'replicas_fn/spec.environment.replicas' succeeded" in runner.output
    assert "inconsistencies" not in runner.output  # kopf saw its patches applied as sent
    assert "Traceback" not in runner.output


def test_demo_operator_restricted_to_namespace_globs(kube_api: KubeAPI) -> None:
    # kopf -n 'glob*' watches Namespaces: works only thanks to the harness's URL-parser fix.
    kube = kube_api
    kube.create_namespace("team-a")
    kube.create_namespace("elsewhere")
    with run_operator(DEMO_OPERATOR, namespaces=["team-*"]) as runner:
        kube.create(RLEXPERIMENTS, experiment("ignored", namespace="elsewhere"))
        kube.create(RLEXPERIMENTS, experiment("served", namespace="team-a"))
        kube.wait_for_object(CONFIGMAPS, "served-env", namespace="team-a")
        kube.create_namespace("team-b")  # a namespace that appears later is picked up
        kube.create(RLEXPERIMENTS, experiment("late", namespace="team-b"))
        kube.wait_for_object(CONFIGMAPS, "late-env", namespace="team-b")
        assert kube.get_or_none(CONFIGMAPS, "ignored-env", namespace="elsewhere") is None
    assert runner.exception is None
    assert "Traceback" not in runner.output


# --------------------------------------------------------------------------- the harness itself


def test_kubeconfig_reaches_the_official_client(kube_api: KubeAPI) -> None:
    assert os.environ["KUBECONFIG"] == str(kube_api.kubeconfig_path)
    assert "KUBERNETES_SERVICE_HOST" not in os.environ
    kubernetes.config.load_config()  # what an operator calls: KUBECONFIG wins outside a pod
    core = kubernetes.client.CoreV1Api()
    assert [ns.metadata.name for ns in core.list_namespace().items] == ["default"]
    assert core.read_namespace("default").status.phase == "Active"
    crs = kubernetes.client.CustomObjectsApi(kube_api.api_client).list_namespaced_custom_object(
        "kuberl.dev", "v1alpha1", "default", "rlexperiments")
    assert crs["items"] == []
    assert kube_api.url.startswith("http://127.0.0.1:")


def test_metadata_generation_and_status_subresource(kube_api: KubeAPI) -> None:
    kube = kube_api
    obj = kube.create(RLEXPERIMENTS, {**experiment("g"), "status": {"phase": "ignored on create"}})
    meta = obj["metadata"]
    assert meta["namespace"] == "default" and meta["generation"] == 1
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z") and int(meta["resourceVersion"]) > 0
    assert "status" not in obj

    spec_changed = kube.patch(RLEXPERIMENTS, "g", {"spec": {"environment": {"replicas": 3}}, "status": {"phase": "x"}})
    assert spec_changed["metadata"]["generation"] == 2
    assert "status" not in spec_changed  # the main endpoint ignores status
    assert int(spec_changed["metadata"]["resourceVersion"]) > int(meta["resourceVersion"])

    status = kube.patch(RLEXPERIMENTS, "g", {"status": {"phase": "Running"}, "spec": {"x": 1}}, subresource="status")
    assert status["status"] == {"phase": "Running"} and "x" not in status["spec"]  # /status: status only
    assert status["metadata"]["generation"] == 2

    labelled = kube.patch(RLEXPERIMENTS, "g", {"metadata": {"labels": {"a": "b"}, "uid": "forged", "generation": 99}})
    assert labelled["metadata"]["generation"] == 2 and labelled["metadata"]["uid"] == meta["uid"]

    noop = kube.patch(RLEXPERIMENTS, "g", {"metadata": {"labels": {"a": "b"}}})
    assert noop["metadata"]["resourceVersion"] == labelled["metadata"]["resourceVersion"]

    unset = kube.patch(RLEXPERIMENTS, "g", {"spec": {"environment": None}})  # RFC 7386 null deletes
    assert "environment" not in unset["spec"] and unset["metadata"]["generation"] == 3


def test_conflicts_and_errors_match_kubernetes(kube_api: KubeAPI) -> None:
    kube = kube_api
    obj = kube.create(CONFIGMAPS, {"metadata": {"name": "c"}, "data": {"k": "1"}})
    rv = obj["metadata"]["resourceVersion"]
    kube.patch(CONFIGMAPS, "c", {"data": {"k": "2"}})

    def status_of_error(call) -> int:
        with pytest.raises(ApiException) as e:
            call()
        return e.value.status

    assert status_of_error(lambda: kube.patch(CONFIGMAPS, "c", {"metadata": {"resourceVersion": rv}, "data": {"k": "3"}})) == 409
    assert status_of_error(lambda: kube.patch(CONFIGMAPS, "c", [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/data/k", "value": "3"}], patch_type="json")) == 422
    assert status_of_error(lambda: kube.replace(CONFIGMAPS, "c", {"metadata": {"name": "c", "resourceVersion": rv}, "data": {}})) == 409
    assert status_of_error(lambda: kube.create(CONFIGMAPS, {"metadata": {"name": "c"}})) == 409
    assert status_of_error(lambda: kube.create(CONFIGMAPS, {"metadata": {"name": "c"}}, namespace="nowhere")) == 404
    assert status_of_error(lambda: kube.request("GET", "/apis/example.com/v1/namespaces/default/widgets")) == 404
    assert status_of_error(lambda: kube.get(CONFIGMAPS, "missing")) == 404

    replaced = kube.replace(CONFIGMAPS, "c", {"metadata": {"name": "c"}, "data": {"k": "put"}})  # PUT works
    assert replaced["data"] == {"k": "put"} and replaced["metadata"]["uid"] == obj["metadata"]["uid"]
    json_patched = kube.patch(CONFIGMAPS, "c", [{"op": "add", "path": "/data/j", "value": "x"}], patch_type="json")
    assert json_patched["data"] == {"k": "put", "j": "x"}

    # The typed client sees the same (its patch_* sends a strategic merge patch).
    core = kubernetes.client.CoreV1Api(kube.api_client)
    core.patch_namespaced_config_map("c", "default", {"data": {"k": "typed"}})
    assert core.read_namespaced_config_map("c", "default").data == {"k": "typed", "j": "x"}


def test_selectors_and_generate_name(kube_api: KubeAPI) -> None:
    kube = kube_api
    kube.create_namespace("other")
    for name, labels, ns in [("a", {"app": "x", "tier": "1"}, "default"), ("b", {"app": "y"}, "default"),
                             ("c", {"app": "x"}, "other")]:
        kube.create(CONFIGMAPS, {"metadata": {"name": name, "labels": labels}}, namespace=ns)

    def names(**kwargs) -> list[str]:
        return [o["metadata"]["name"] for o in kube.list(CONFIGMAPS, **kwargs)]

    assert names(label_selector="app=x") == ["a"]
    assert names(label_selector="app=x", all_namespaces=True) == ["a", "c"]
    assert names(label_selector="app!=x") == ["b"]
    assert names(label_selector="app in (x, y),!tier") == ["b"]
    assert names(label_selector="tier") == ["a"]
    assert names(field_selector="metadata.name=b") == ["b"]
    assert names(namespace="other") == ["c"]

    generated = [kube.create(CONFIGMAPS, {"metadata": {"generateName": "gen-"}})["metadata"]["name"] for _ in range(3)]
    assert len(set(generated)) == 3 and all(n.startswith("gen-") for n in generated)

    kube.request("DELETE", CONFIGMAPS.path("default"), query={"labelSelector": "app"})  # deletecollection
    assert names() == sorted(generated)


def test_watch_resumes_filters_and_times_out(kube_api: KubeAPI) -> None:
    kube = kube_api
    core = kubernetes.client.CoreV1Api(kube.api_client)
    kube.create(CONFIGMAPS, {"metadata": {"name": "before"}})
    listed = core.list_namespaced_config_map("default")
    kube.create(CONFIGMAPS, {"metadata": {"name": "after", "labels": {"w": "1"}}})
    kube.create(CONFIGMAPS, {"metadata": {"name": "unlabelled"}})
    kube.patch(CONFIGMAPS, "after", {"data": {"k": "v"}})

    started = time.monotonic()
    events = [(e["type"], e["object"].metadata.name) for e in kubernetes.watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=listed.metadata.resource_version,
        label_selector="w=1", timeout_seconds=1)]
    assert events == [("ADDED", "after"), ("MODIFIED", "after")]  # no replay of "before"
    assert 0.9 < time.monotonic() - started < 5  # the server ended the stream

    initial = [(e["type"], e["object"].metadata.name) for e in kubernetes.watch.Watch().stream(
        core.list_namespaced_config_map, "default", timeout_seconds=1)]
    assert initial == [("ADDED", "after"), ("ADDED", "before"), ("ADDED", "unlabelled")]


def test_garbage_collection_finalizers_and_crds(kube_api: KubeAPI) -> None:
    kube = kube_api
    owner = kube.create(RLEXPERIMENTS, experiment("owner"))
    ref = {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment", "name": "owner", "uid": owner["metadata"]["uid"]}
    kube.create(CONFIGMAPS, {"metadata": {"name": "owned", "ownerReferences": [ref]}})
    kube.create(CONFIGMAPS, {"metadata": {"name": "held", "ownerReferences": [ref], "finalizers": ["x/y"]}})
    kube.delete(RLEXPERIMENTS, "owner")
    assert kube.get_or_none(CONFIGMAPS, "owned") is None
    held = kube.get(CONFIGMAPS, "held")
    assert held["metadata"]["deletionTimestamp"]  # marked, waits for its finalizer
    kube.patch(CONFIGMAPS, "held", {"metadata": {"finalizers": None}})
    assert kube.get_or_none(CONFIGMAPS, "held") is None

    orphaner = kube.create(RLEXPERIMENTS, experiment("orphaner"))
    kube.create(CONFIGMAPS, {"metadata": {"name": "orphan", "ownerReferences": [{**ref, "uid": orphaner["metadata"]["uid"]}]}})
    kube.delete(RLEXPERIMENTS, "orphaner", propagation_policy="Orphan")
    assert kube.get_or_none(CONFIGMAPS, "orphan") is not None

    # Deleting a Namespace deletes what is in it.
    kube.create_namespace("doomed")
    kube.create(CONFIGMAPS, {"metadata": {"name": "inside"}}, namespace="doomed")
    kube.delete("v1/namespaces", "doomed")
    assert kube.list(CONFIGMAPS, namespace="doomed") == []

    # Posting a CRD makes its resource servable, as in a real cluster.
    kube.create("apiextensions.k8s.io/v1/customresourcedefinitions", {
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
                 "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                 "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}}}]},
    })
    widget = kube.create("example.com/v1/widgets", {"metadata": {"name": "w"}, "spec": {"size": 1}})
    assert widget["kind"] == "Widget" and widget["metadata"]["generation"] == 1


def test_registry_matches_the_project_crd(kube_api: KubeAPI) -> None:
    # The harness declares RLExperiment up front; the project's CRD, posted, must agree with it.
    import kmock
    from kuberl.crd import crd_manifest

    kube_api.create(CRDS, crd_manifest())
    served = kube_api.call(lambda e: e.spec_of(kmock.resource("kuberl.dev", "v1alpha1", "rlexperiments")))
    assert (served.group, served.version, served.plural, served.kind, served.namespaced) == (
        RLEXPERIMENTS.group, RLEXPERIMENTS.version, RLEXPERIMENTS.plural, RLEXPERIMENTS.kind, RLEXPERIMENTS.namespaced)
    assert "status" in served.subresources
