"""A shard's experiments: one ring buffer and one rate limiter each, snapshotted to a directory."""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kuberl.config import ExperimentConfig
from kuberl.replay import REPLAY_SNAPSHOTS, ReplayBuffer, SamplesPerInsertLimiter, Sampled
from kuberl.registry import Registry
from kuberl.rpc import Exhausted, FailedPrecondition, NotFound
from kuberl.sizes import stored_row_bytes
from kuberl.snapshots import SetAside, load_snapshots
from kuberl.tensors import Transitions

log = logging.getLogger(__name__)


def default_max_bytes() -> int:
    """Three quarters of the memory this process may use: its cgroup's limit (a pod's), else the machine's."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit():
            return int(limit) * 3 // 4
    except OSError:
        pass
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 3 // 4

@dataclass
class ReplayTable:
    buffer: ReplayBuffer
    limiter: SamplesPerInsertLimiter
    snapshot_interval: float
    last_snapshot: float = 0.0
    snapshotted_inserts: int = 0
    restored: bool = False


class Shard:
    """Every experiment's replay on this replica, within caps on how many tables it holds and on
    the memory their rings may take (a table's size is known when OpenReplay declares the
    observation width; one that would not fit is refused with RESOURCE_EXHAUSTED)."""

    def __init__(self, data_dir: Path | None, insert_wait_seconds: float = 2.0, max_tables: int = 64,
                 max_bytes: int | None = None):
        self.data_dir = data_dir
        self.insert_wait_seconds = insert_wait_seconds
        self.max_tables = max_tables
        self.max_bytes = default_max_bytes() if max_bytes is None else max_bytes
        self._open_lock = threading.Lock()  # the caps are checked and a table added as one step
        self.tables: Registry[ReplayTable] = Registry("has no replay on this shard (call OpenReplay first)")
        self._snapshot_lock = threading.Lock()  # a released table's snapshot must not be written again
        self.set_aside = SetAside()  # snapshots that could not be restored
        if data_dir is not None:
            for experiment_id, buffer in load_snapshots(data_dir, REPLAY_SNAPSHOTS, ReplayBuffer.from_snapshot,
                                                        self.set_aside):
                self._restore(experiment_id, buffer)

    def _restore(self, experiment_id: str, buffer: ReplayBuffer) -> None:
        log.info("restored %d transitions of %s", buffer.size, experiment_id)
        # A restored experiment is servable at once (sampling and stats); OpenReplay later
        # brings the rate limiter's settings, so until then inserts are not held back.
        self.tables.put(experiment_id, ReplayTable(buffer, SamplesPerInsertLimiter(1.0, 0, 2**62), 10.0,
                                                   time.monotonic(), buffer.total_inserted, restored=True))

    def _table_bytes(self, table: ReplayTable) -> int:
        buffer = table.buffer
        return buffer.capacity * stored_row_bytes(buffer.obs_size, buffer.prioritized) if buffer.obs_size \
            else buffer.nbytes

    def _admit(self, experiment_id: str, config: ExperimentConfig, obs_size: int) -> None:
        """Raises Exhausted when a new table of this size would break a cap."""
        others = [t for eid, t in self.tables.items() if eid != experiment_id]
        if len(others) >= self.max_tables:
            raise Exhausted(f"this shard holds {len(others)} replay tables, its limit (--max-replay-tables); "
                            "release finished experiments (kuberl delete) or add shards")
        if obs_size:
            row = stored_row_bytes(obs_size, config.buffer.prioritized)
            wanted = config.buffer.capacity * row
            used = sum(self._table_bytes(t) for t in others)
            if used + wanted > self.max_bytes:
                raise Exhausted(f"spec.buffer.capacity: {config.buffer.capacity} transitions of {row} "
                                f"bytes need {wanted} bytes; this shard has {max(0, self.max_bytes - used)} of its "
                                f"{self.max_bytes} left (--max-replay-bytes): lower the capacity or add shards")

    def open(self, experiment_id: str, config: ExperimentConfig, obs_size: int = 0) -> ReplayTable:
        """Creates the experiment's table, or re-opens it with new settings (idempotent)."""
        with self._open_lock:
            existing = self.tables.find(experiment_id)
            if existing is None or (obs_size and not existing.buffer.obs_size):
                self._admit(experiment_id, config, obs_size)
            if existing is not None and obs_size:
                existing.buffer.declare_obs_size(obs_size)
            return self._open(experiment_id, config, obs_size)

    def _open(self, experiment_id: str, config: ExperimentConfig, obs_size: int) -> ReplayTable:
        learner = config.learner
        shards, push = max(config.buffer.replicas, 1), config.environment.push_batch_size
        # The learner's allowance pays one batch per batch_size / samples_per_insert inserts (over
        # all shards): a shard holding inserts back sooner would wait for samples that the
        # learner may not take yet, and both would wait for good.
        per_batch = math.ceil(learner.batch_size / learner.samples_per_insert / shards)
        # Per-shard warm-up and slack: inserts are spread over the experiment's shards.
        settings = (learner.samples_per_insert, max(learner.learning_starts, learner.batch_size) // shards + 1,
                    max(4 * push, learner.learning_starts // shards, per_batch + push))
        table = self.tables.get_or_create(experiment_id, lambda: ReplayTable(
            ReplayBuffer(config.buffer.capacity, seed=config.seed, obs_size=obs_size),
            SamplesPerInsertLimiter(*settings), config.buffer.snapshot_interval_seconds, time.monotonic()))
        table.limiter.configure(*settings)  # re-opened: new settings, the same replay and its totals
        table.snapshot_interval = config.buffer.snapshot_interval_seconds
        if config.buffer.prioritized:  # once on, on for good: the learner may still send priorities
            table.buffer.prioritize(config.buffer.priority_exponent)
        return table

    def table(self, experiment_id: str) -> ReplayTable:
        return self.tables.get(experiment_id)

    def push(self, experiment_id: str, batch: Transitions, wait: bool = True) -> ReplayBuffer:
        """Adds the batch once the samples-per-insert limit lets it (waiting up to
        insert_wait_seconds, or not at all without `wait`); Exhausted if it does not."""
        table = self.table(experiment_id)
        if not table.limiter.wait_for_insert(table.buffer, self.insert_wait_seconds if wait else 0.0):
            raise Exhausted(f"experiment {experiment_id!r}: inserts are ahead of sampling by more than the "
                            f"samples-per-insert limit allows (is the learner running?)")
        table.buffer.add(batch)
        return table.buffer

    def sample(self, experiment_id: str, count: int, experiment_inserted: int = 0,
               experiment_sampled: int = 0) -> tuple[Sampled, ReplayBuffer]:
        """Draws count rows; the experiment's totals over all shards, when the learner sends
        them, are what the insert limit counts from now on (SamplesPerInsertLimiter)."""
        if count < 1:
            raise ValueError(f"count: must be >= 1, got {count}")
        if experiment_inserted < 0 or experiment_sampled < 0:
            raise ValueError(f"experiment_inserted, experiment_sampled: must be >= 0, got "
                             f"{experiment_inserted}, {experiment_sampled}")
        table = self.table(experiment_id)
        try:
            drawn = table.buffer.draw(count)
        except LookupError as err:
            raise NotFound(f"experiment {experiment_id!r}: {err}") from None
        table.limiter.notify(experiment_inserted, experiment_sampled)
        return drawn, table.buffer

    def update_priorities(self, experiment_id: str, keys: np.ndarray, priorities: np.ndarray) -> int:
        buffer = self.table(experiment_id).buffer
        if not buffer.prioritized:
            raise FailedPrecondition(f"experiment {experiment_id!r}: its replay samples uniformly "
                                     "(spec.buffer.prioritized is off)")
        return buffer.update_priorities(keys, priorities)

    def snapshot_due(self, now: float | None = None, force: bool = False) -> int:
        """Snapshots every table whose interval has passed and that changed; returns how many."""
        if self.data_dir is None:
            return 0
        now = time.monotonic() if now is None else now
        with self._snapshot_lock:
            return self._snapshot(now, force)

    def _snapshot(self, now: float, force: bool) -> int:
        written = 0
        for experiment_id, table in self.tables.items():
            changed = table.buffer.total_inserted != table.snapshotted_inserts
            due = force or (table.snapshot_interval > 0 and now - table.last_snapshot >= table.snapshot_interval)
            if changed and due:
                inserted = table.buffer.total_inserted
                try:
                    saved = table.buffer.save(self.data_dir, experiment_id)
                except OSError as err:  # this experiment's snapshot waits for the next round; the others go on
                    log.error("snapshot of %s failed: %s", experiment_id, err)
                    continue
                table.last_snapshot, table.snapshotted_inserts = now, inserted
                written += saved
        return written

    def release(self, experiment_id: str) -> bool:
        """Drops the experiment's table and its snapshot; False when this shard held none."""
        with self._snapshot_lock:
            table = self.tables.find(experiment_id)
            if table is not None:
                self.tables.pop(experiment_id)
                table.limiter.close()
            if self.data_dir is not None:
                REPLAY_SNAPSHOTS.remove(self.data_dir, experiment_id)
        return table is not None

    def experiments(self) -> dict[str, ReplayBuffer]:
        return {eid: t.buffer for eid, t in self.tables.items()}

    def close(self) -> None:
        for table in self.tables.values():
            table.limiter.close()
