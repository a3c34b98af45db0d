"""Versioned weights per experiment: in memory for serving, and on disk so that a restarted
policy role comes back with the newest version of every experiment, and with its result (the
best evaluated version, which is what a finished experiment leaves)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kuberl.snapshots import SetAside, Snapshot, SnapshotKind, load_snapshots, read_snapshot

log = logging.getLogger(__name__)

# 1: `version` and w0, w1, ... (the network's tensors in order).
# 2: and, once there is a result, `result` ([version, episodes, env_steps]), `result_return`
#    and r0, r1, ... (its tensors).
POLICY_SNAPSHOTS = SnapshotKind("kuberl.policy", 2)


@dataclass(frozen=True)
class Evaluation:
    """A greedy evaluation of one version."""

    mean_return: float
    episodes: int
    env_steps: int


@dataclass(frozen=True)
class Result:
    """The version an experiment leaves as its result, and why."""

    version: int
    weights: list[np.ndarray]
    evaluation: Evaluation


Versioned = tuple[int, list[np.ndarray]]


def _tensors(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    count = sum(1 for name in arrays if name.startswith(prefix) and name[len(prefix):].isdigit())
    if count < 1:
        raise ValueError(f"no tensors {prefix}0, {prefix}1, ...")
    return [arrays[f"{prefix}{i}"] for i in range(count)]


def _weights_of(snapshot: Snapshot) -> tuple[Versioned, Result | None]:
    arrays = snapshot.arrays
    latest = (int(arrays["version"]), _tensors(arrays, "w"))
    names = {"version", *(f"w{i}" for i in range(len(latest[1])))}
    result = None
    if "result" in arrays:
        version, episodes, env_steps = (int(x) for x in arrays["result"])
        weights = _tensors(arrays, "r")
        names |= {"result", "result_return", *(f"r{i}" for i in range(len(weights)))}
        result = Result(version, weights, Evaluation(float(arrays["result_return"]), episodes, env_steps))
    if set(arrays) != names:
        raise ValueError(f"members {sorted(arrays)}; expected {sorted(names)}")
    return latest, result


def _arrays_of(latest: Versioned, result: Result | None) -> dict[str, np.ndarray]:
    arrays = {"version": np.array(latest[0], dtype=np.int64), **{f"w{i}": w for i, w in enumerate(latest[1])}}
    if result is not None:
        e = result.evaluation
        arrays.update({"result": np.array([result.version, e.episodes, e.env_steps], dtype=np.int64),
                       "result_return": np.array(e.mean_return, dtype=np.float64),
                       **{f"r{i}": w for i, w in enumerate(result.weights)}})
    return arrays


def read_policy(data_dir: Path, experiment_id: str) -> tuple[Versioned, Result | None] | None:
    """An experiment's newest weights and result from a policy role's data directory, read
    only (the role may be gone or still running); None when it holds none."""
    snapshot = read_snapshot(data_dir, POLICY_SNAPSHOTS, experiment_id)
    return None if snapshot is None else _weights_of(snapshot)


class PolicyStore:
    """The newest weights of each experiment. Versions only move forward.

    With a data_dir, a background thread writes each experiment's newest version at most every
    `flush_seconds` (the learner pushes many versions a second; the newest is what matters),
    and `close` writes what is left.
    """

    def __init__(self, data_dir: Path | None = None, flush_seconds: float = 1.0):
        self.data_dir = data_dir
        self._latest: dict[str, Versioned] = {}
        self._results: dict[str, Result] = {}
        self._unsaved: set[str] = set()
        self._lock = threading.Lock()  # the weights; held only briefly (GetPolicy and UpdatePolicy wait on it)
        self._flush_lock = threading.Lock()  # a released experiment's snapshot must not be written again
        self._stop = threading.Event()
        self._flusher: threading.Thread | None = None
        self.set_aside = SetAside()  # snapshots that could not be restored
        if data_dir is not None:
            for experiment_id, (latest, result) in load_snapshots(data_dir, POLICY_SNAPSHOTS, _weights_of,
                                                                  self.set_aside):
                self._latest[experiment_id] = latest
                if result is not None:
                    self._results[experiment_id] = result
                log.info("restored policy version %d of %s%s", latest[0], experiment_id,
                         f" (result: version {result.version})" if result else "")
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

    def set_result(self, experiment_id: str, version: int, weights: list[np.ndarray], evaluation: Evaluation) -> None:
        """Keeps `weights` (a version already published) as the experiment's result. The learner
        chooses which version is best; the newest is left as it is. ValueError for a version
        that was never published or an evaluation that is not one."""
        if not weights:
            raise ValueError("weights.tensors: must not be empty")
        if evaluation.episodes < 1 or not np.isfinite(evaluation.mean_return) or evaluation.env_steps < 0:
            raise ValueError(f"result: {evaluation} is not an evaluation (episodes >= 1, finite return, "
                             "env_steps >= 0)")
        with self._lock:
            current = self._latest.get(experiment_id)
            if current is None or not 0 <= version <= current[0]:
                raise ValueError(f"weights.version: {version} was not published (newest: "
                                 f"{current[0] if current else 'none'})")
            self._results[experiment_id] = Result(version, [w.copy() for w in weights], evaluation)
            self._unsaved.add(experiment_id)

    def versions(self) -> dict[str, tuple[int, int]]:
        """Each experiment's (newest version, result version or -1)."""
        with self._lock:
            return {e: (latest[0], self._results[e].version if e in self._results else -1)
                    for e, latest in self._latest.items()}

    def result(self, experiment_id: str) -> Result | None:
        with self._lock:
            return self._results.get(experiment_id)

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
                self._results.pop(experiment_id, None)
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
                pending = {eid: _arrays_of(self._latest[eid], self._results.get(eid)) for eid in self._unsaved}
                self._unsaved.clear()
            for experiment_id, arrays in pending.items():
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
