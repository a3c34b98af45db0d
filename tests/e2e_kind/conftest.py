"""The kind end-to-end suite needs a reachable cluster whose kube-context is kind-*, plus the
docker, kind, kubectl and helm binaries. Where there is none (as on the project's CI machines,
which cannot run a Kubernetes node) it is skipped with that reason; it is never weakened to pass.

    kind create cluster --name kuberl
    bash tests/run.sh tests/e2e_kind -m kind
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

REQUIRED_BINARIES = ("docker", "kind", "kubectl", "helm")


def cluster_context() -> tuple[str | None, str]:
    """The kind context to use, or None and why not."""
    missing = [b for b in REQUIRED_BINARIES if shutil.which(b) is None]
    if missing:
        return None, f"no kind cluster here: missing {', '.join(missing)} (see README, Kubernetes quick start)"
    done = subprocess.run(["kubectl", "config", "current-context"], capture_output=True, text=True, timeout=10)
    context = done.stdout.strip()
    if done.returncode != 0 or not context.startswith("kind-"):
        return None, f"the current kube-context {context or '(none)'} is not a kind cluster"
    reachable = subprocess.run(["kubectl", "version", "--request-timeout=5s"], capture_output=True, timeout=20)
    if reachable.returncode != 0:
        return None, f"kind cluster {context} is not reachable"
    return context, ""


@pytest.fixture(scope="session")
def kind_context() -> str:
    context, reason = cluster_context()
    if context is None:
        pytest.skip(reason)
    return context


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "e2e_kind" in str(item.path):
            item.add_marker(pytest.mark.kind)
