"""Fixtures for operator tests against the kmock-based API emulator (see kube_api.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.operator.kube_api import KubeAPI


@pytest.fixture
def kube_api() -> Iterator[KubeAPI]:
    """A fresh emulated API server per test; KUBECONFIG points at it while the test runs."""
    with KubeAPI() as kube:
        yield kube
