"""Versioned weights per experiment: in memory for serving, and on disk so that a restarted
policy role comes back with the newest version of every experiment, and with its result (the
best evaluated version, which is what a finished experiment leaves).

A released experiment (deleted, or its RLExperiment gone) loses its newest weights at once, but
its result, with the config that trained it, is kept for the role's result retention, so that
it can still be evaluated, played and exported after its workloads are gone."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from kuberl.roles import DEFAULT_RESULT_RETENTION_SECONDS, checked_retention
from kuberl.rpc import FailedPrecondition, NotFound
from kuberl.snapshots import SetAside, Snapshot, SnapshotKind, load_snapshots, read_snapshot

log = logging.getLogger(__name__)

# 1: `version` and w0, w1, ... (the network's tensors in order).
# 2: and, once there is a result, `result` ([version, episodes, env_steps]), `result_return`
#    and r0, r1, ... (its tensors).
# 3: and with the result, `config` (the serialized ExperimentConfig protobuf, as uint8) when the
#    learner sent it; a released experiment's file holds its result and `released_at` (Unix
#    seconds) only, without `version` and w0, w1, ...
POLICY_SNAPSHOTS = SnapshotKind("kuberl.policy", 3)


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
    config: bytes = b""  # the ExperimentConfig that trained it, serialized; opaque here
    released_at: float | None = None  # Unix seconds; None while the experiment is live


Versioned = tuple[int, list[np.ndarray]]


def _tensors(arrays: dict[str, np.ndarray], prefix: str) -> list[np.ndarray]:
    count = sum(1 for name in arrays if name.startswith(prefix) and name[len(prefix):].isdigit())
    if count < 1:
        raise ValueError(f"no tensors {prefix}0, {prefix}1, ...")
    return [arrays[f"{prefix}{i}"] for i in range(count)]


def _weights_of(snapshot: Snapshot) -> tuple[Versioned | None, Result | None]:
    arrays = snapshot.arrays
    latest, names = None, set()
    if "released_at" not in arrays:
        latest = (int(arrays["version"]), _tensors(arrays, "w"))
        names = {"version", *(f"w{i}" for i in range(len(latest[1])))}
    result = None
    if "result" in arrays:
        version, episodes, env_steps = (int(x) for x in arrays["result"])
        weights = _tensors(arrays, "r")
        names |= {"result", "result_return", *(f"r{i}" for i in range(len(weights)))}
        config = b""
        if "config" in arrays:
            config = arrays["config"].astype(np.uint8).tobytes()
            names.add("config")
        released_at = None
        if "released_at" in arrays:
            released_at = float(arrays["released_at"])
            names.add("released_at")
        result = Result(version, weights, Evaluation(float(arrays["result_return"]), episodes, env_steps), config,
                        released_at)
    if set(arrays) != names or (latest is None and result is None):
        raise ValueError(f"members {sorted(arrays)}; expected {sorted(names) or 'version and w0, w1, ...'}")
    return latest, result


def _arrays_of(latest: Versioned | None, result: Result | None) -> dict[str, np.ndarray]:
    arrays = {}
    if latest is not None:
        arrays = {"version": np.array(latest[0], dtype=np.int64), **{f"w{i}": w for i, w in enumerate(latest[1])}}
    if result is not None:
        e = result.evaluation
        arrays.update({"result": np.array([result.version, e.episodes, e.env_steps], dtype=np.int64),
                       "result_return": np.array(e.mean_return, dtype=np.float64),
                       **{f"r{i}": w for i, w in enumerate(result.weights)}})
        if result.config:
            arrays["config"] = np.frombuffer(result.config, dtype=np.uint8)
        if result.released_at is not None:
            arrays["released_at"] = np.array(result.released_at, dtype=np.float64)
    return arrays


def read_policy(data_dir: Path, experiment_id: str) -> tuple[Versioned | None, Result | None] | None:
    """An experiment's newest weights and result from a policy role's data directory, read
    only (the role may be gone or still running); None when it holds none. A released
    experiment has no newest weights, only its kept result."""
    snapshot = read_snapshot(data_dir, POLICY_SNAPSHOTS, experiment_id)
    return None if snapshot is None else _weights_of(snapshot)


class PolicyStore:
    """The newest weights of each experiment. Versions only move forward.

    With a data_dir, a background thread writes each experiment's newest version at most every
    `flush_seconds` (the learner pushes many versions a second; the newest is what matters),
    and `close` writes what is left. A released experiment's result is kept
    `result_retention_seconds` after its release (0: forgotten with the rest).
    """

    def __init__(self, data_dir: Path | None = None, flush_seconds: float = 1.0,
                 result_retention_seconds: float = DEFAULT_RESULT_RETENTION_SECONDS,
                 clock: Callable[[], float] = time.time):
        self.data_dir = data_dir
        self.result_retention_seconds = checked_retention(result_retention_seconds)
        self._clock = clock
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
                if latest is not None:
                    self._latest[experiment_id] = latest
                if result is not None:
                    self._results[experiment_id] = result
                log.info("restored %s of %s%s", f"policy version {latest[0]}" if latest else "the released result",
                         experiment_id, f" (result: version {result.version})" if result else "")
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
            kept = self._results.get(experiment_id)
            if kept is not None and kept.released_at is not None:
                # A released experiment's learner pushing late (while its pod goes) must not bring
                # it back; a new experiment under the id purges the kept result first.
                raise FailedPrecondition(f"experiment {experiment_id!r} was released; its result is kept, and a "
                                         "new experiment under this id must purge it first")
            self._latest[experiment_id] = (version, [w.copy() for w in weights])
            self._unsaved.add(experiment_id)
        return version

    def set_result(self, experiment_id: str, version: int, weights: list[np.ndarray], evaluation: Evaluation,
                   config: bytes = b"") -> None:
        """Keeps `weights` (a version already published) as the experiment's result, with the
        config that trained them. The learner chooses which version is best; the newest is left
        as it is. ValueError for a version that was never published or an evaluation that is not one."""
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
            self._results[experiment_id] = Result(version, [w.copy() for w in weights], evaluation, config)
            self._unsaved.add(experiment_id)

    def versions(self) -> dict[str, tuple[int, int]]:
        """Each live experiment's (newest version, result version or -1)."""
        with self._lock:
            return {e: (latest[0], self._results[e].version if e in self._results else -1)
                    for e, latest in self._latest.items()}

    def result(self, experiment_id: str, include_released: bool = False) -> Result | None:
        """The experiment's result; a released experiment's only with include_released."""
        self.expire()
        with self._lock:
            result = self._results.get(experiment_id)
        return None if result is None or (result.released_at is not None and not include_released) else result

    def results(self) -> dict[str, Result]:
        """Every result held: of live experiments, and kept ones of released experiments."""
        self.expire()
        with self._lock:
            return dict(self._results)

    def expires_at(self, result: Result) -> float | None:
        """When a released experiment's result will be forgotten (Unix seconds); None while live."""
        return None if result.released_at is None else result.released_at + self.result_retention_seconds

    def newer_than(self, experiment_id: str, version: int) -> tuple[int, list[np.ndarray] | None]:
        """(latest version, its weights if newer than `version` else None); latest is -1 when none exist."""
        with self._lock:
            current = self._latest.get(experiment_id)
        if current is None:
            return -1, None
        return current[0], (current[1] if current[0] > version else None)

    def release(self, experiment_id: str, purge: bool = False) -> bool:
        """Forgets the experiment's newest weights, and its result unless the retention keeps it
        (and not `purge`); False when nothing was held. Releasing again keeps the first release's time."""
        with self._flush_lock:
            with self._lock:
                held = self._latest.pop(experiment_id, None) is not None
                result = self._results.get(experiment_id)
                held = held or result is not None
                if result is not None and self.result_retention_seconds > 0 and not purge:
                    if result.released_at is None:
                        self._results[experiment_id] = replace(result, released_at=self._clock())
                    kept = self._results[experiment_id]
                else:
                    self._results.pop(experiment_id, None)
                    kept = None
                self._unsaved.discard(experiment_id)
            self._write_or_remove(experiment_id, kept)
        return held

    def delete_result(self, experiment_id: str) -> None:
        """Forgets a released experiment's kept result now. NotFound when none is kept;
        FailedPrecondition while the experiment is live (its learner would only set one again)."""
        with self._flush_lock:
            with self._lock:
                result = self._results.get(experiment_id)
                if result is None:
                    raise NotFound(f"no result of {experiment_id!r} is held")
                if result.released_at is None:
                    raise FailedPrecondition(f"{experiment_id!r} is not released; delete the experiment first")
                del self._results[experiment_id]
            self._write_or_remove(experiment_id, None)

    def expire(self) -> list[str]:
        """Forgets the released results older than the retention; returns their ids."""
        now = self._clock()
        with self._flush_lock:
            with self._lock:
                expired = [e for e, r in self._results.items()
                           if r.released_at is not None and now >= r.released_at + self.result_retention_seconds]
                for experiment_id in expired:
                    del self._results[experiment_id]
            for experiment_id in expired:
                log.info("%s: released result forgotten (retention %.0fs)", experiment_id,
                         self.result_retention_seconds)
                self._write_or_remove(experiment_id, None)
        return expired

    def _write_or_remove(self, experiment_id: str, kept: Result | None) -> None:
        """A released experiment's file, under the flush lock: its kept result only, or gone."""
        if self.data_dir is None:
            return
        if kept is None:
            POLICY_SNAPSHOTS.remove(self.data_dir, experiment_id)
        else:
            POLICY_SNAPSHOTS.save(self.data_dir, experiment_id, _arrays_of(None, kept))

    def flush(self) -> int:
        """Writes every experiment changed since the last flush; returns how many. One that
        fails stays marked unsaved (and is logged); the others are written all the same."""
        if self.data_dir is None:
            return 0
        # The writes hold the flush lock, not the weights' lock: serving never waits on a disk.
        written = 0
        with self._flush_lock:
            with self._lock:
                pending = {eid: _arrays_of(self._latest.get(eid), self._results.get(eid)) for eid in self._unsaved}
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
            self.expire()

    def close(self) -> None:
        self._stop.set()
        if self._flusher is not None:
            self._flusher.join()
        self.flush()
