"""The operator run by kopf (KopfRunner, in this process) against a real API server, with the
identity the chart gives it: the chart's ServiceAccount, ClusterRoles and bindings rendered by
Helm and applied, and a TokenRequest token of that account, so a permission the chart forgot
fails a test. The CRD is the chart's (crds/), applied as `helm install` applies it."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests import tools
from tests.conftest import REPO
from tests.kube import NAMESPACES, Objects, TestCluster

HANDLERS = REPO / "operator" / "kuberl_operator" / "handlers.py"
CHART = REPO / "charts" / "kuberl"
RELEASE = "kuberl-optest"  # the ClusterRoles are named after it: apart from any real release
IDENTITY_NAMESPACE = "kuberl-optest"
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")


@pytest.fixture(scope="session")
def identities(kube_cluster: TestCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Path]]:
    """Kubeconfigs of the chart's operator and experiment-API ServiceAccounts."""
    kube_cluster.install_crd()
    rendered = tools.helm("4", "template", RELEASE, str(CHART), "--namespace", IDENTITY_NAMESPACE, check=True).stdout
    rbac = [d for d in yaml.safe_load_all(rendered) if d and d["kind"] in RBAC_KINDS]
    kube_cluster.ensure_namespace(IDENTITY_NAMESPACE)
    kube_cluster.apply(rbac)
    directory = tmp_path_factory.mktemp("identities")
    yield {role: kube_cluster.service_account_kubeconfig(IDENTITY_NAMESPACE, f"{RELEASE}-{role}", directory)
           for role in ("operator", "experiment")}
    for doc in rbac:
        if doc["kind"].startswith("Cluster"):
            kube_cluster.kubectl("delete", doc["kind"].lower(), doc["metadata"]["name"], "--ignore-not-found",
                                 "--wait=false")
    kube_cluster.kubectl("delete", "namespace", IDENTITY_NAMESPACE, "--wait=false", check=False)


@pytest.fixture(scope="session")
def objects(kube_cluster: TestCluster, identities) -> Objects:
    return Objects(kube_cluster)


@pytest.fixture
def namespace(kube_cluster: TestCluster, objects: Objects) -> Iterator[str]:
    """A namespace of the test's own; deleted afterwards with everything in it."""
    name = f"optest-{uuid.uuid4().hex[:8]}"
    objects.create(NAMESPACES, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    yield name
    objects.delete(NAMESPACES, name)


@contextlib.contextmanager
def run_operator(kubeconfig: Path, environment: dict[str, str], timeout: float = 60) -> Iterator[object]:
    """kopf's KopfRunner on the operator's handlers, acting as the chart's ServiceAccount.

    The handlers are loaded from their file (so each run reads the environment anew) into a
    fresh registry whose login reads $KUBECONFIG when it runs (the kubernetes client's own
    login would use the kubeconfig named when it was first imported). While it runs, KUBECONFIG and the
    KUBERL_* settings are the operator's; the test's own client was made before and keeps
    the admin's identity. The operator's log is printed when the block fails."""
    import kopf
    from kopf.testing import KopfRunner

    saved = {key: os.environ.get(key) for key in ("KUBECONFIG", *environment)}
    os.environ.update({"KUBECONFIG": str(kubeconfig), **environment})
    registry = kopf.OperatorRegistry()
    kopf.on.login(registry=registry, id="login_with_kubeconfig")(kopf.login_with_kubeconfig)
    runner = KopfRunner(["run", "--standalone", "--verbose", "--all-namespaces", str(HANDLERS)], registry=registry,
                        timeout=timeout)
    failed = False
    try:
        with runner:
            try:
                yield runner
            except BaseException:
                failed = True
                raise
    finally:
        if failed:  # the output is complete only once the runner has stopped
            print(runner.output[-20000:])
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
