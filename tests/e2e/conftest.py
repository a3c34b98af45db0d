"""The chart installed on a real cluster (tests/kube.py says which) for the end-to-end suite."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from tests.e2e.release import CHART, NAMESPACE, RELEASE, Release, helm_values
from tests.kube import TestCluster


@pytest.fixture(scope="session")
def mariadb_image(kube_cluster: TestCluster, base_image: str) -> str:
    """The chart's MariaDB, made from Debian's mariadb-server on the local base (no registry)."""
    from tests.localcluster import images

    image = images.mariadb_image(base_image)
    kube_cluster.load_image(image)
    return image


@pytest.fixture(scope="module")
def release(kube_cluster: TestCluster, cluster_image: str, mariadb_image: str) -> Iterator[Release]:
    """`helm install --wait` of the chart, uninstalled (experiments first) at the end."""
    started = time.monotonic()
    kube_cluster.ensure_namespace(NAMESPACE)
    kube_cluster.helm("upgrade", "--install", RELEASE, str(CHART), "--namespace", NAMESPACE,
                      *helm_values(cluster_image, mariadb_image), "--wait", "--timeout", "10m")
    print(f"\n[e2e] helm install --wait: {time.monotonic() - started:.1f}s")
    yield Release(kube_cluster)
    kube_cluster.kubectl("delete", "rlx", "--all", "--wait=true", "--timeout=120s", namespace=NAMESPACE, check=False)
    kube_cluster.helm("uninstall", RELEASE, "--namespace", NAMESPACE, "--wait", "--timeout", "5m", check=False)
    kube_cluster.kubectl("delete", "namespace", NAMESPACE, "--wait=false", check=False)

