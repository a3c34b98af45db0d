"""Versioned weights per experiment: in memory for serving, and on disk so that a restarted
policy role comes back with the newest version of every experiment."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import numpy as np

from kuberl.snapshots import SetAside, Snapshot, SnapshotKind, load_snapshots

log = logging.getLogger(__name__)

# 1: `version` and w0, w1, ... (the network's tensors in order).
POLICY_SNAPSHOTS = SnapshotKind("kuberl.policy", 1)


def _weights_of(snapshot: Snapshot) -> tuple[int, list[np.ndarray]]:
    arrays = snapshot.arrays
    count = len(arrays) - 1
    if count < 1 or set(arrays) != {"version", *(f"w{i}" for i in range(count))}:
        raise ValueError(f"members {sorted(arrays)}; expected version, w0, w1, ...")
    return int(arrays["version"]), [arrays[f"w{i}"] for i in range(count)]


class PolicyStore:
    """The newest weights of each experiment. Versions only move forward.

    With a data_dir, a background thread writes each experiment's newest version at most every
    `flush_seconds` (the learner pushes many versions a second; the newest is what matters),
    and `close` writes what is left.
    """

    def __init__(self, data_dir: Path | None = None, flush_seconds: float = 1.0):
        self.data_dir = data_dir
        self._latest: dict[str, tuple[int, list[np.ndarray]]] = {}
        self._unsaved: set[str] = set()
        self._lock = threading.Lock()  # the weights; held only briefly (GetPolicy and UpdatePolicy wait on it)
        self._flush_lock = threading.Lock()  # a released experiment's snapshot must not be written again
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.set_aside = SetAside()  # snapshots that could not be restored
        if data_dir is not None:
            for experiment_id, (version, weights) in load_snapshots(data_dir, POLICY_SNAPSHOTS, _weights_of,
                                                                    self.set_aside):
                self._latest[experiment_id] = (version, weights)
                log.info("restored policy version %d of %s", version, experiment_id)
            self._flusher = threading.Thread(target=self._flush_loop, args=(flush_seconds,), name="policy-flush",
                                             daemon=True)
            self._flusher.start()

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
            self._unsaved.add(experiment_id)
        return version

    def newer_than(self, experiment_id: str, version: int) -> tuple[int, list[np.ndarray] | None]:
        """(latest version, its weights if newer than `version` else None); latest is -1 when none exist."""
        with self._lock:
            current = self._latest.get(experiment_id)
        if current is None:
            return -1, None
        return current[0], (current[1] if current[0] > version else None)

    def release(self, experiment_id: str) -> bool:
        """Forgets the experiment's weights, in memory and on disk; False when none were held."""
        with self._flush_lock:
            with self._lock:
                held = self._latest.pop(experiment_id, None) is not None
                self._unsaved.discard(experiment_id)
            if self.data_dir is not None:
                POLICY_SNAPSHOTS.remove(self.data_dir, experiment_id)
        return held

    def flush(self) -> int:
        """Writes every experiment changed since the last flush; returns how many. One that
        fails stays marked unsaved (and is logged); the others are written all the same."""
        if self.data_dir is None:
            return 0
        # The writes hold the flush lock, not the weights' lock: serving never waits on a disk.
        written = 0
        with self._flush_lock:
            with self._lock:
                pending = {eid: self._latest[eid] for eid in self._unsaved}
                self._unsaved.clear()
            for experiment_id, (version, weights) in pending.items():
                arrays = {"version": np.array(version, dtype=np.int64),
                          **{f"w{i}": w for i, w in enumerate(weights)}}
                try:
                    POLICY_SNAPSHOTS.save(self.data_dir, experiment_id, arrays)
                    written += 1
                except OSError as err:
                    log.error("policy snapshot of %s failed: %s", experiment_id, err)
                    with self._lock:
                        self._unsaved.add(experiment_id)
        return written

    def _flush_loop(self, seconds: float) -> None:
        while not self._stop.wait(seconds):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
