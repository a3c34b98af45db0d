"""Fixtures for the multi-container tests: an engine, the images, and a cluster of containers."""

from __future__ import annotations

import time

import pytest

from tests.conftest import skip_or_fail
from tests.docker import engine


@pytest.fixture(scope="session")
def docker_engine():
    """The engine; one this fixture started is stopped again at the end (images stay cached)."""
    try:
        started = engine.ensure_engine()
    except engine.DockerUnavailable as err:
        skip_or_fail(f"no Docker engine: {err}")
    yield
    if started is not None:
        started.terminate()
        started.wait(timeout=60)


@pytest.fixture(scope="session")
def project_image(docker_engine) -> str:
    try:
        started = time.monotonic()
        base = engine.ensure_base_image()
        base_seconds = time.monotonic() - started
    except engine.DockerUnavailable as err:
        skip_or_fail(f"no Docker engine: {err}")
    image, build_seconds = engine.build_project_image(base)
    print(f"\n[docker] base image {base} ready in {base_seconds:.1f}s; {image} built in {build_seconds:.1f}s, "
          f"{engine.image_size_mb(image):.0f} MB")
    return image
