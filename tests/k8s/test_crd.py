"""The CRD is generated from the config model and, installed on a real API server, has the
subresources and columns users rely on; skaffold.yaml and the Dockerfile say what users rely on
(skaffold itself runs skaffold.yaml in tests/e2e)."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from kuberl import crd
from tests.conftest import REPO
from tests.kube import RLEXPERIMENTS, Objects, TestCluster

NAMESPACE = "kuberl-crd-tests"


def test_checked_in_crd_is_fresh():
    assert crd.CRD_PATH.read_text() == crd.render(), "run `python -m kuberl.crd`"


@pytest.fixture(scope="module")
def server(kube_cluster: TestCluster):
    kube_cluster.install_crd()
    kube_cluster.ensure_namespace(NAMESPACE)
    yield kube_cluster
    kube_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)


def _create(server: TestCluster, name: str, spec: dict) -> dict:
    server.kubectl("delete", "rlx", name, "--ignore-not-found", "--wait=true", namespace=NAMESPACE)
    return Objects(server).create(RLEXPERIMENTS, {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment",
                                                  "metadata": {"name": name}, "spec": spec}, NAMESPACE)


def test_printer_columns_show_the_fields_they_name(server: TestCluster):
    _create(server, "columns", {"environment": {"replicas": 5}, "buffer": {"replicas": 3}})
    status = {"phase": "Running", "envSteps": 12345, "meanReturn": 87.5, "evalReturn": 480.25,
              "result": {"policyVersion": 40, "meanReturn": 477.5, "episodes": 100},
              "environment": {"replicas": 5, "readyReplicas": 2, "selector": "a=b"},
              "buffer": {"replicas": 3, "readyReplicas": 3, "selector": "c=d"}}
    Objects(server).patch(RLEXPERIMENTS, "columns", {"status": status}, NAMESPACE, subresource="status")
    header, row = server.kubectl("get", "rlx", "columns", namespace=NAMESPACE).stdout.splitlines()
    shown = dict(zip(header.split(), row.split()))
    assert list(shown) == ["NAME", "PHASE", "ENV", "ACTORS", "SHARDS", "STEPS", "RETURN", "EVAL", "RESULT", "AGE"]
    # Actors and shards are what is ready (2 of 5 actors), not what was asked for.
    assert {k: shown[k] for k in ("PHASE", "ENV", "ACTORS", "SHARDS", "STEPS", "RETURN", "EVAL", "RESULT")} == {
        "PHASE": "Running", "ENV": "CartPole-v1", "ACTORS": "2", "SHARDS": "3", "STEPS": "12345",
        "RETURN": "87.5", "EVAL": "480.25", "RESULT": "477.5"}
    assert server.kubectl("get", "rlexperiments.kuberl.dev", "-o", "name", namespace=NAMESPACE).stdout == \
        server.kubectl("get", "rlx", "-o", "name", namespace=NAMESPACE).stdout  # the short name


def test_scale_subresource_is_the_actors(server: TestCluster):
    _create(server, "scaled", {"environment": {"replicas": 2}})
    Objects(server).patch(RLEXPERIMENTS, "scaled", {"status": {"environment": {
        "replicas": 2, "readyReplicas": 1, "selector": "kuberl.dev/experiment=scaled"}}}, NAMESPACE,
        subresource="status")
    server.kubectl("scale", "rlx", "scaled", "--replicas=4", namespace=NAMESPACE)
    stored = Objects(server).get(RLEXPERIMENTS, "scaled", NAMESPACE)
    assert stored["spec"]["environment"]["replicas"] == 4 and stored["metadata"]["generation"] == 2
    scale = json.loads(server.kubectl("get", "--raw", f"/apis/kuberl.dev/v1alpha1/namespaces/{NAMESPACE}"
                                      "/rlexperiments/scaled/scale").stdout)
    assert scale["spec"]["replicas"] == 4
    assert scale["status"] == {"replicas": 1, "selector": "kuberl.dev/experiment=scaled"}


def test_status_is_its_own_subresource_and_unknown_status_fields_are_pruned(server: TestCluster):
    objects = Objects(server)
    created = _create(server, "statused", {})
    # A write to the main resource leaves status alone; a status write leaves spec alone.
    objects.patch(RLEXPERIMENTS, "statused", {"status": {"phase": "Running"}}, NAMESPACE)
    assert not objects.get(RLEXPERIMENTS, "statused", NAMESPACE).get("status")
    after = objects.patch(RLEXPERIMENTS, "statused", {"spec": {"seed": 1}, "status": {"phase": "Running",
                                                                                      "bogus": 1}},
                          NAMESPACE, subresource="status")
    assert after["status"] == {"phase": "Running"} and after["spec"]["seed"] == 0
    assert after["metadata"]["generation"] == created["metadata"]["generation"]
    refused = server.kubectl("patch", "rlx", "statused", "--subresource=status", "--type=merge", "-p",
                             json.dumps({"status": {"phase": "Sleeping"}}), namespace=NAMESPACE, check=False)
    assert refused.returncode != 0 and "status.phase" in refused.stderr


def test_skaffold_config_hands_the_image_to_the_chart():
    config = yaml.safe_load((REPO / "skaffold.yaml").read_text())
    (release,) = config["deploy"]["helm"]["releases"]
    assert (REPO / release["chartPath"] / "Chart.yaml").exists()
    assert release["setValueTemplates"] == {"image.repository": "{{.IMAGE_REPO_kuberl}}",
                                            "image.tag": "{{.IMAGE_TAG_kuberl}}"}
    (kind,) = [p for p in config["profiles"] if p["name"] == "kind"]
    assert re.fullmatch(kind["activation"][0]["kubeContext"], "kind-kuberl")


def test_dockerfile_base_image_is_a_build_arg_defaulting_to_python_slim():
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "ARG BASE_IMAGE=python:3.11-slim" in dockerfile
    assert dockerfile.count("FROM ${BASE_IMAGE}") == 2
    assert re.search(r"^USER 10001", dockerfile, re.M)
    assert 'ENTRYPOINT ["kuberl"]' in dockerfile
