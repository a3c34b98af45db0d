"""Shared test settings.

KUBERL_REQUIRE_ALL=1 (set by tests/run.sh under CI) turns every "this machine lacks X" skip
into a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

import collections
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
REQUIRE_ALL = os.environ.get("KUBERL_REQUIRE_ALL") == "1"


def skip_or_fail(reason: str) -> None:
    """Skips here, fails in CI: for tests whose server or tool is missing."""
    if REQUIRE_ALL:
        pytest.fail(f"KUBERL_REQUIRE_ALL=1 but {reason}")
    pytest.skip(reason)


_SUITE_SECONDS: collections.Counter[str] = collections.Counter()


def _suite(nodeid: str) -> str:
    parts = nodeid.split("::")[0].split("/")
    return "/".join(parts[:2]) if len(parts) > 2 else parts[0]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "kube_cluster" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.cluster)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    _SUITE_SECONDS[_suite(report.nodeid)] += report.duration


def pytest_terminal_summary(terminalreporter) -> None:
    """The time of each suite (its tests' setup, call and teardown), as CI prints its stages."""
    terminalreporter.section("time per suite")
    for suite, seconds in sorted(_SUITE_SECONDS.items()):
        terminalreporter.write_line(f"stage suite {suite}: {seconds:.0f}s")


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas() -> None:
    # Tiny matrices: BLAS threads only fight the test's own processes for the two cores.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")


# ---- servers and tools shared by several suites (session-wide: built or started once) --------

@pytest.fixture(scope="session")
def docker_engine():
    """A Docker engine; one this fixture started is stopped again at the end (images stay)."""
    from tests.docker import engine

    try:
        started = engine.ensure_engine()
    except engine.DockerUnavailable as err:
        skip_or_fail(f"no Docker engine: {err}")
    yield
    engine.prune_replaced_builds()
    if started is not None:
        started.terminate()
        started.wait(timeout=60)


@pytest.fixture(scope="session")
def base_image(docker_engine) -> str:
    """The locally made Debian base every image of the tests builds on (no registry here)."""
    from tests.docker import engine

    try:
        return engine.ensure_base_image()
    except engine.DockerUnavailable as err:
        skip_or_fail(f"no base image: {err}")


@pytest.fixture(scope="session")
def project_image(base_image: str) -> str:
    from tests.docker import engine

    image, seconds = engine.build_project_image(base_image)
    print(f"\n[docker] {image} built on {base_image} in {seconds:.1f}s, {engine.image_size_mb(image):.0f} MB")
    return image


@pytest.fixture(scope="session")
def kube_cluster():
    """The cluster the operator, chart and end-to-end tests use (see tests/kube.py for which)."""
    from tests import kube
    from tests.localcluster import cluster as local_cluster
    from tests.localcluster import lifecycle

    choice = kube.choose()
    if choice.kind == "none":
        skip_or_fail(choice.detail)
    started = False
    if choice.kind == "local":
        layout, started = lifecycle.ensure_up()
    yield kube.TestCluster.for_choice(choice)
    if started:
        local_cluster.down(layout)


@pytest.fixture(scope="session")
def cluster_image(kube_cluster, project_image: str) -> str:
    """The project's image, on the cluster's nodes."""
    kube_cluster.load_image(project_image)
    return project_image
