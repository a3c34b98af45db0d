"""Tests of the test tooling itself (tests/tools.py): Helm/kubectl install and the validators."""

from __future__ import annotations

import copy
import re
import subprocess
from pathlib import Path

import pytest

from tests import tools

# --------------------------------------------------------------------------------------------
# Helm and kubectl
# --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def binaries() -> dict[str, Path]:
    return tools.helm_binaries()


def test_helm_binaries_are_helm3_and_helm4(binaries: dict[str, Path]) -> None:
    assert set(binaries) == {"helm3", "helm4"}
    for name, path in binaries.items():
        assert path.is_file() and path.stat().st_mode & 0o111, f"{name}: {path} not executable"
    assert re.match(r"^v3\.\d+\.\d+", tools.helm("3", "version", "--short", check=True).stdout)
    assert re.match(r"^v4\.\d+\.\d+", tools.helm("helm4", "version", "--short", check=True).stdout)


def test_helm_uses_private_homes(binaries: dict[str, Path]) -> None:
    for version in ("3", "4"):
        env = tools.helm(version, "env", check=True).stdout
        home = tools.tools_dir() / "helm-home" / f"helm{version}"
        for var in ("HELM_CACHE_HOME", "HELM_CONFIG_HOME", "HELM_DATA_HOME"):
            assert re.search(rf'^{var}="{re.escape(str(home))}/', env, re.M), (var, env)


def test_helm_reports_failure_without_raising_unless_checked(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-chart"
    result = tools.helm("4", "lint", missing)
    assert result.returncode != 0
    with pytest.raises(tools.ToolError, match="no-such-chart"):
        tools.helm("3", "lint", missing, check=True)
    with pytest.raises(tools.ToolError, match="unknown Helm version"):
        tools.helm("2", "version")


def test_helm_lints_and_renders_a_tiny_chart(tmp_path: Path) -> None:
    chart = tmp_path / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: tiny\nversion: 0.1.0\n")
    (chart / "values.yaml").write_text("replicas: 2\n")
    (chart / "templates" / "cm.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-cm\n"
        "data:\n  replicas: {{ .Values.replicas | quote }}\n"
    )
    for version in ("3", "4"):
        tools.helm(version, "lint", chart, check=True)
        rendered = tools.helm(version, "template", "rel", chart, check=True).stdout
        assert "name: rel-cm" in rendered and 'replicas: "2"' in rendered


def test_kubectl_reports_a_client_version() -> None:
    for minor, path in tools.kubectl_binaries().items():
        out = subprocess.run(
            [str(path), "version", "--client"], capture_output=True, text=True, check=True
        ).stdout
        assert re.search(rf"Client Version: v{re.escape(minor)}\.\d+", out), out
    assert tools.kubectl_binary() == tools.kubectl_binaries()["1.37"]


def test_install_is_idempotent(binaries: dict[str, Path]) -> None:
    before = {name: path.stat().st_mtime_ns for name, path in binaries.items()}
    tools._installed.cache_clear()  # the next call goes to the cache directory again
    again = tools.helm_binaries()
    assert again == binaries
    assert {name: path.stat().st_mtime_ns for name, path in again.items()} == before


# --------------------------------------------------------------------------------------------
# Built-in Kubernetes objects
# --------------------------------------------------------------------------------------------

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "web", "image": "nginx:1.27"}]},
        },
    },
}


def test_kubernetes_versions() -> None:
    versions = tools.supported_k8s_versions()
    assert "1.31.0" in versions
    assert tools.latest_k8s_version() == versions[-1]
    assert tuple(map(int, versions[-1].split("."))) >= (1, 37, 0)


@pytest.mark.parametrize("k8s_version", ["1.31.0", "latest"])
def test_validate_k8s_accepts_a_deployment(k8s_version: str) -> None:
    version = tools.latest_k8s_version() if k8s_version == "latest" else k8s_version
    tools.validate_k8s(copy.deepcopy(DEPLOYMENT), version)


def test_validate_k8s_rejects_an_unknown_field() -> None:
    bad = copy.deepcopy(DEPLOYMENT)
    bad["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    with pytest.raises(tools.ValidationFailed, match=r"Deployment/web.*imagePullPolcy"):
        tools.validate_k8s(bad)


def test_validate_k8s_rejects_a_wrong_type() -> None:
    bad = copy.deepcopy(DEPLOYMENT)
    bad["spec"]["replicas"] = "two"
    with pytest.raises(tools.ValidationFailed, match=r"Deployment/web.*spec\.replicas.*'two'"):
        tools.validate_k8s(bad)


def test_validate_k8s_rejects_unknown_versions_and_kinds() -> None:
    with pytest.raises(tools.ToolError, match="no schemas for Kubernetes 1.20"):
        tools.validate_k8s(copy.deepcopy(DEPLOYMENT), "1.20.0")
    with pytest.raises(tools.ValidationFailed, match="Widget/w"):
        tools.validate_k8s({"apiVersion": "example.com/v1", "kind": "Widget",
                            "metadata": {"name": "w"}})  # fmt: skip


# --------------------------------------------------------------------------------------------
# Custom resources
# --------------------------------------------------------------------------------------------

CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "widgets.example.com"},
    "spec": {
        "group": "example.com",
        "names": {"kind": "Widget", "plural": "widgets", "singular": "widget"},
        "scope": "Namespaced",
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "required": ["a"],
                                "x-kubernetes-validations": [
                                    {"rule": "self.a <= self.b", "message": "a must not exceed b"}
                                ],
                                "properties": {
                                    "a": {"type": "integer", "minimum": 1},
                                    "b": {"type": "integer", "default": 10},
                                    "mode": {"type": "string", "enum": ["fast", "slow"],
                                             "default": "fast"},  # fmt: skip
                                    "ratio": {"type": "number", "nullable": True},
                                    "tags": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "set",
                                        "items": {
                                            "type": "string",
                                            "x-kubernetes-validations": [
                                                {"rule": "self.size() <= 5",
                                                 "messageExpression": "'tag ' + self + ' is long'"}
                                            ],  # fmt: skip
                                        },
                                    },
                                    "ports": {
                                        "type": "array",
                                        "x-kubernetes-list-type": "map",
                                        "x-kubernetes-list-map-keys": ["name"],
                                        "items": {
                                            "type": "object",
                                            "required": ["name"],
                                            "properties": {
                                                "name": {"type": "string"},
                                                "port": {"type": "integer", "default": 80},
                                            },
                                        },
                                    },
                                    "extra": {
                                        "type": "object",
                                        "x-kubernetes-preserve-unknown-fields": True,
                                    },
                                    "limits": {
                                        "type": "object",
                                        "additionalProperties": {
                                            "x-kubernetes-int-or-string": True
                                        },
                                    },
                                },
                            },
                            "status": {"type": "object", "properties": {}},
                        },
                    }
                },
            },
            {"name": "v0", "served": False, "storage": False,
             "schema": {"openAPIV3Schema": {"type": "object"}}},  # fmt: skip
        ],
    },
}


def widget(**spec: object) -> dict:
    return {
        "apiVersion": "example.com/v1",
        "kind": "Widget",
        "metadata": {"name": "w1", "namespace": "default"},
        "spec": spec,
    }


def test_custom_resource_accepted_and_defaulted() -> None:
    obj = widget(
        a=3,
        tags=["x", "y"],
        ports=[{"name": "http"}, {"name": "grpc", "port": 9}],
        ratio=None,
        extra={"anything": {"goes": 1}},
        limits={"cpu": "1", "n": 2},
    )
    before = copy.deepcopy(obj)
    out = tools.validate_custom_resource(CRD, obj)
    assert obj == before, "the input must not be changed"
    assert out["spec"]["b"] == 10 and out["spec"]["mode"] == "fast"
    assert out["spec"]["ports"] == [{"name": "http", "port": 80}, {"name": "grpc", "port": 9}]
    assert out["metadata"] == before["metadata"]
    # the default is what the CEL rule sees: a=11 > default b=10
    with pytest.raises(tools.ValidationFailed, match="a must not exceed b"):
        tools.validate_custom_resource(CRD, widget(a=11))


def test_null_in_a_non_nullable_field_is_pruned_then_defaulted() -> None:
    out = tools.validate_custom_resource(CRD, widget(a=1, b=None, mode=None))
    assert out["spec"]["b"] == 10 and out["spec"]["mode"] == "fast"


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ({"a": 0}, r"spec\.a: 0 is less than the minimum of 1"),
        ({"a": 1, "mode": "medium"}, r"spec\.mode: 'medium' is not one of \['fast', 'slow'\]"),
        ({"a": 5, "b": 4}, r"spec: a must not exceed b \(rule: self\.a <= self\.b\)"),
        ({"a": "1"}, r"spec\.a: '1' is not of type 'integer'"),
        ({"a": 1, "colour": "red"}, r"'colour' was unexpected"),
        ({"b": 4}, r"'a' is a required property"),
        ({"a": 1, "tags": ["ok", "toolong"]}, r"spec\.tags\[1\]: tag toolong is long"),
        ({"a": 1, "tags": ["x", "x"]}, r"spec\.tags: .*non-unique"),
        ({"a": 1, "ports": [{"name": "h"}, {"name": "h"}]}, r"spec\.ports\[1\]: Duplicate"),
        ({"a": 1, "limits": {"cpu": 1.5}}, r"spec\.limits\.cpu: 1\.5 is not of type"),
    ],
)
def test_custom_resource_rejected(spec: dict, problem: str) -> None:
    with pytest.raises(tools.ValidationFailed, match=r"Widget/w1: .*" + problem):
        tools.validate_custom_resource(CRD, widget(**spec))


def test_custom_resource_identity_checks() -> None:
    wrong_group = {**widget(a=1), "apiVersion": "other.com/v1"}
    with pytest.raises(tools.ValidationFailed, match="not in group 'example.com'"):
        tools.validate_custom_resource(CRD, wrong_group)
    with pytest.raises(tools.ValidationFailed, match="not served"):
        tools.validate_custom_resource(CRD, {**widget(a=1), "apiVersion": "example.com/v0"})
    with pytest.raises(tools.ValidationFailed, match="not the CRD's 'Widget'"):
        tools.validate_custom_resource(CRD, {**widget(a=1), "kind": "Gadget"})
    bad_name = widget(a=1)
    bad_name["metadata"]["name"] = "Not_A_Name"
    with pytest.raises(tools.ValidationFailed, match="DNS subdomain"):
        tools.validate_custom_resource(CRD, bad_name)


def test_cel_rule_that_cannot_evaluate_is_an_error_not_a_pass() -> None:
    crd = copy.deepcopy(CRD)
    spec_schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    spec_schema["x-kubernetes-validations"] = [{"rule": "self.missing > 0"}]
    with pytest.raises(tools.ValidationFailed, match="could not be evaluated"):
        tools.validate_custom_resource(crd, widget(a=1))
    spec_schema["x-kubernetes-validations"] = [{"rule": "self.a >"}]
    with pytest.raises(tools.ValidationFailed, match="does not compile"):
        tools.validate_custom_resource(crd, widget(a=1))
    # a transition rule: no old object on create, so it is not evaluated
    spec_schema["x-kubernetes-validations"] = [{"rule": "self.a == oldSelf.a"}]
    tools.validate_custom_resource(crd, widget(a=1))


# --------------------------------------------------------------------------------------------
# skaffold.yaml
# --------------------------------------------------------------------------------------------

SKAFFOLD = """\
apiVersion: skaffold/v4beta13
kind: Config
metadata:
  name: tiny
build:
  artifacts:
    - image: tiny
      docker:
        dockerfile: Dockerfile
deploy:
  helm:
    releases:
      - name: tiny
        chartPath: charts/tiny
        setValueTemplates:
          image.repository: "{{.IMAGE_REPO_tiny}}"
          image.tag: "{{.IMAGE_TAG_tiny}}"
profiles:
  - name: kind
    activation:
      - kubeContext: kind-.*
"""


def test_shared_schemas_are_found() -> None:
    assert (tools.shared_dir() / "schemas" / "skaffold" / "v4beta13.json").is_file()


def test_validate_skaffold_accepts_a_minimal_config(tmp_path: Path) -> None:
    path = tmp_path / "skaffold.yaml"
    path.write_text(SKAFFOLD)
    (doc,) = tools.validate_skaffold(path)
    assert doc["metadata"]["name"] == "tiny"


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        ("chartPath:", "chartPth:", r"deploy\.helm\.releases\[0\]: .*'chartPth' was unexpected"),
        ("build:", "biuld:", r"<root>: .*'biuld' was unexpected"),
        ("dockerfile:", "dockerFile:", r"build\.artifacts\[0\]\.docker: .*'dockerFile'"),
        ("kubeContext: kind-.*", "kubeContext: [kind]", r"kubeContext: \['kind'\] is not of"),
    ],
)
def test_validate_skaffold_rejects_mistakes(tmp_path: Path, old: str, new: str,
                                            problem: str) -> None:  # fmt: skip
    path = tmp_path / "skaffold.yaml"
    path.write_text(SKAFFOLD.replace(old, new, 1))
    with pytest.raises(tools.ValidationFailed, match=r"\(tiny\): .*" + problem):
        tools.validate_skaffold(path)


def test_validate_skaffold_unknown_api_version(tmp_path: Path) -> None:
    path = tmp_path / "skaffold.yaml"
    path.write_text(SKAFFOLD.replace("v4beta13", "v1alpha1"))
    with pytest.raises(tools.ToolError, match=r"no Skaffold schema for .*'skaffold/v1alpha1'"):
        tools.validate_skaffold(path)
