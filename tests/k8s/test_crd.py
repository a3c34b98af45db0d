"""The CRD is generated from the config model and agrees with it; skaffold.yaml and the
Dockerfile say what users rely on."""

from __future__ import annotations

import re

import yaml

from kuberl import crd
from kuberl.config import ExperimentConfig, from_spec, to_spec
from tests import tools
from tests.conftest import REPO

CRD = yaml.safe_load(crd.CRD_PATH.read_text())
MINIMAL = {"apiVersion": "kuberl.dev/v1alpha1", "kind": "RLExperiment", "metadata": {"name": "x", "namespace": "d"},
           "spec": {}}


def test_checked_in_crd_is_fresh():
    assert crd.CRD_PATH.read_text() == crd.render(), "run `python -m kuberl.crd`"


def test_crd_is_a_valid_kubernetes_object():
    tools.validate_k8s(CRD, tools.latest_k8s_version())


def test_api_server_defaults_equal_the_config_models():
    defaulted = tools.validate_custom_resource(CRD, MINIMAL)
    spec = dict(defaulted["spec"])
    assert spec.pop("suspend") is False
    assert from_spec(spec) == ExperimentConfig()
    assert spec == to_spec(ExperimentConfig())


def test_short_name_scale_subresource_and_printer_columns_point_at_real_fields():
    version = CRD["spec"]["versions"][0]
    assert CRD["spec"]["names"]["shortNames"] == ["rlx"]
    schema = version["schema"]["openAPIV3Schema"]

    def resolve(path: str) -> dict:
        node = schema
        for part in path.strip(".").split("."):
            node = node["properties"][part]
        return node

    scale = version["subresources"]["scale"]
    assert resolve(scale["specReplicasPath"])["type"] == "integer"
    assert resolve(scale["statusReplicasPath"])["type"] == "integer"
    assert resolve(scale["labelSelectorPath"])["type"] == "string"
    assert "status" in version["subresources"]
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == ["Phase", "Env", "Actors", "Shards", "Steps", "Return", "Age"]
    for column in columns.values():
        if not column["jsonPath"].startswith(".metadata"):
            assert resolve(column["jsonPath"])["type"] == column["type"]


def test_skaffold_config_is_valid_and_hands_the_image_to_the_chart():
    tools.validate_skaffold(REPO / "skaffold.yaml")
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
