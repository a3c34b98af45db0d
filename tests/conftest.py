"""Shared test settings.

KUBERL_REQUIRE_ALL=1 (set by tests/run.sh under CI) turns every "this machine lacks X" skip
into a failure, so CI can never pass by skipping.
"""

from __future__ import annotations

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


@pytest.fixture(autouse=True, scope="session")
def _single_threaded_blas() -> None:
    # Tiny matrices: BLAS threads only fight the test's own processes for the two cores.
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(var, "1")
