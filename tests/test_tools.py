"""Tests of the test tooling itself (tests/tools.py): Helm/kubectl install and the schema validator."""

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
