"""Versioned weights per experiment, in memory."""

from __future__ import annotations

import threading

import numpy as np


class PolicyStore:
    """The newest weights of each experiment. Versions only move forward."""

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, list[np.ndarray]]] = {}
        self._lock = threading.Lock()

    def update(self, experiment_id: str, version: int, weights: list[np.ndarray]) -> int:
        """Stores weights as `version`; ValueError unless it is newer than the stored one."""
        if version < 0:
            raise ValueError(f"weights.version: must be >= 0, got {version}")
        if not weights:
            raise ValueError("weights.tensors: must not be empty")
        with self._lock:
            current = self._latest.get(experiment_id)
            if current is not None and version <= current[0]:
                raise ValueError(f"weights.version: {version} is not newer than the stored version {current[0]}")
            self._latest[experiment_id] = (version, [w.copy() for w in weights])
        return version

    def newer_than(self, experiment_id: str, version: int) -> tuple[int, list[np.ndarray] | None]:
        """(latest version, its weights if newer than `version` else None); latest is -1 when none exist."""
        with self._lock:
            current = self._latest.get(experiment_id)
        if current is None:
            return -1, None
        return current[0], (current[1] if current[0] > version else None)
