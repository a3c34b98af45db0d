"""A replay shard's core: a fixed-capacity FIFO ring buffer on preallocated numpy arrays,
sampled uniformly or in proportion to priorities (Schaul et al.'s prioritized replay, as Ape-X
spreads it over shards: the learner sends new priorities back to the shard each row came from).

Thread-safe: inserts and samples take one lock each for a bounded copy only. A snapshot writes
the ring's arrays as they are under that lock (no second copy of the buffer in memory; inserts
wait for the write to the page cache) into an atomic `.npz` file (kuberl.snapshots).
A samples-per-insert rate limiter (DeepMind Reverb's SampleToInsertRatio) lets an insert wait
while the learner lags behind, which is what keeps actors from outrunning it.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kuberl.snapshots import Snapshot, SnapshotKind
from kuberl.sumtree import SumTree
from kuberl.tensors import Transitions, one_step_rows

# 1: rows oldest first, counters [1, capacity, inserted, sampled]; 2: the ring as stored,
# counters [capacity, inserted, sampled, next slot]; 3: and the `steps` column (before it,
# every row spanned one env step); 4: prioritized, and `priorities` (each stored row's p^alpha,
# in the rows' order) with `priority_state` [alpha, the largest priority seen].
REPLAY_SNAPSHOTS = SnapshotKind("kuberl.replay", 4)


PRIORITY_EPSILON = 1e-6  # a row whose TD error is 0 keeps a chance of being drawn again


@dataclass
class Sampled:
    rows: Transitions
    # Prioritized only: each row's key (for UpdatePriorities) and its probability in this shard.
    keys: np.ndarray | None = None
    probabilities: np.ndarray | None = None


class ReplayBuffer:
    """FIFO of transitions; shapes and dtypes are fixed by the first insert.

    Prioritized (after `prioritize`): a new row gets the largest priority seen so far, rows are
    drawn with probability p^alpha / sum p^alpha, and `update_priorities` sets p for rows named by
    the keys a draw returned; a key whose row has since been overwritten is ignored.
    """

    def __init__(self, capacity: int, seed: int = 0, obs_size: int = 0):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.obs_size = obs_size  # declared by OpenReplay; 0: the first insert decides
        self._columns: Transitions | None = None
        self._next = 0  # the slot the next row goes to
        self._written = 0  # rows written so far: a row's key, and key % capacity its slot
        self._size = 0
        self.priority_exponent: float | None = None  # None: uniform
        self._priorities: SumTree | None = None
        self._keys: np.ndarray | None = None
        self._max_priority = 1.0
        self.total_inserted = 0
        self.total_sampled = 0
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()

    @property
    def size(self) -> int:
        return self._size

    @property
    def prioritized(self) -> bool:
        return self._priorities is not None

    @property
    def priority_mass(self) -> float:
        """What the learner splits a batch over shards by: sum p^alpha, or the size when uniform."""
        return self._priorities.total if self._priorities is not None else float(self._size)

    def prioritize(self, exponent: float) -> None:
        """Samples by priority from now on; rows already stored get the largest priority seen."""
        with self._lock:
            if self._priorities is None:
                self._priorities, self._keys = SumTree(self.capacity), np.full(self.capacity, -1, np.int64)
                order = np.arange(self._written - self._size, self._written)  # the stored rows' keys
                self._keys[order % self.capacity] = order
                self._priorities.set(order % self.capacity, np.full(self._size, self._max_priority ** exponent))
            self.priority_exponent = exponent

    def _allocate(self, batch: Transitions) -> Transitions:
        return Transitions(*(np.zeros((self.capacity, *col.shape[1:]), dtype=col.dtype) for col in batch))

    @property
    def nbytes(self) -> int:
        """Memory the ring holds (0 before the first insert)."""
        return 0 if self._columns is None else sum(col.nbytes for col in self._columns)

    def declare_obs_size(self, obs_size: int) -> None:
        """The environment's observation width: every insert must have it."""
        stored = None if self._columns is None else self._columns.obs.shape[1:]
        if stored is not None and stored != (obs_size,):
            raise ValueError(f"obs_size: {obs_size}, but this replay already holds observations of shape {list(stored)}")
        self.obs_size = obs_size

    def _check_layout(self, batch: Transitions) -> None:
        if self.obs_size:
            for name in ("obs", "next_obs"):
                shape = getattr(batch, name).shape[1:]
                if shape != (self.obs_size,):
                    raise ValueError(f"batch.{name}: rows of shape {list(shape)}; this replay was opened for "
                                     f"observations of {self.obs_size} values")
        if self._columns is None:
            return
        for name, stored, new in zip(Transitions._fields, self._columns, batch):
            if stored.shape[1:] != new.shape[1:] or stored.dtype != new.dtype:
                raise ValueError(f"batch.{name}: {new.dtype}{list(new.shape[1:])} rows do not match this "
                                 f"replay's {stored.dtype}{list(stored.shape[1:])}")

    def add(self, batch: Transitions) -> None:
        n = batch.rows
        if n == 0:
            return
        with self._lock:
            self._check_layout(batch)
            if self._columns is None:
                self._columns = self._allocate(batch)
            kept = min(n, self.capacity)  # a batch larger than the buffer keeps its newest rows
            keys = self._written + np.arange(kept)
            slots = keys % self.capacity
            for stored, new in zip(self._columns, batch):
                stored[slots] = new[n - kept:]
            if self._priorities is not None and self._keys is not None and self.priority_exponent is not None:
                self._keys[slots] = keys
                self._priorities.set(slots, np.full(kept, self._max_priority ** self.priority_exponent))
            self._written += kept
            self._next = int(self._written % self.capacity)
            self._size = min(self._size + kept, self.capacity)
            self.total_inserted += n

    def sample(self, count: int) -> Transitions:
        """count rows drawn with replacement (uniformly, or by priority)."""
        return self.draw(count).rows

    def draw(self, count: int) -> Sampled:
        """count rows drawn with replacement; prioritized, with their keys and probabilities."""
        with self._lock:
            if self._size == 0 or self._columns is None:
                raise LookupError("the replay is empty")
            self.total_sampled += count
            if self._priorities is None or self._keys is None:
                idx = self._rng.integers(0, self._size, size=count)
                return Sampled(Transitions(*(col[idx] for col in self._columns)))
            total = self._priorities.total
            idx = self._priorities.find(self._rng.random(count) * total)
            return Sampled(Transitions(*(col[idx] for col in self._columns)), self._keys[idx].copy(),
                           (self._priorities.get(idx) / total).astype(np.float32))

    def update_priorities(self, keys: np.ndarray, priorities: np.ndarray) -> int:
        """Sets the priorities of the rows `keys` name (from `draw`); returns how many were still
        stored. ValueError unless prioritized, or for priorities that are not finite and >= 0."""
        keys, priorities = np.asarray(keys, np.int64), np.asarray(priorities, np.float64)
        if keys.shape != priorities.shape or keys.ndim != 1:
            raise ValueError(f"priorities: {priorities.shape} for keys {keys.shape}; one each")
        if not np.isfinite(priorities).all() or (priorities < 0).any():
            raise ValueError("priorities: must be finite and >= 0")
        with self._lock:
            if self._priorities is None or self._keys is None or self.priority_exponent is None:
                raise ValueError("this replay samples uniformly (buffer.prioritized is off)")
            slots = keys % self.capacity
            live = (keys >= 0) & (self._keys[slots] == keys)
            if not live.any():
                return 0
            raised = priorities[live] + PRIORITY_EPSILON
            self._max_priority = max(self._max_priority, float(raised.max()))
            self._priorities.set(slots[live], raised ** self.priority_exponent)
            return int(live.sum())

    def _ordered(self) -> Transitions | None:
        if self._columns is None:
            return None
        start = (self._next - self._size) % self.capacity
        order = (start + np.arange(self._size)) % self.capacity
        return Transitions(*(col[order] for col in self._columns))

    def ordered(self) -> Transitions | None:
        """Every stored row, oldest first (a copy)."""
        with self._lock:
            return self._ordered()

    def save(self, data_dir: Path, experiment_id: str) -> bool:
        """Writes the experiment's snapshot into data_dir; False when there is nothing to write."""
        with self._lock:
            if self._columns is None:
                return False
            counters = np.array([self.capacity, self.total_inserted, self.total_sampled, self._next], np.int64)
            priorities = {}
            if self._priorities is not None and self.priority_exponent is not None:
                # What the learner learned about each row: without it a restored shard would draw
                # every row at the largest priority, and learning would wander off.
                priorities = {"priorities": self._priorities.get(np.arange(self._size)),
                              "priority_state": np.array([self.priority_exponent, self._max_priority], np.float64)}
            REPLAY_SNAPSHOTS.save(data_dir, experiment_id, {
                "counters": counters, **priorities,
                **{name: col[:self._size] for name, col in zip(Transitions._fields, self._columns)}})
        return True

    @classmethod
    def from_snapshot(cls, snapshot: Snapshot, capacity: int | None = None, seed: int = 0) -> ReplayBuffer:
        """A buffer holding a snapshot's rows and counters; with a smaller `capacity`, the newest rows."""
        arrays = snapshot.arrays
        counters = [int(c) for c in arrays["counters"]]
        if snapshot.version < 3:
            arrays = {**arrays, "steps": one_step_rows(arrays["rewards"].shape[0])}
        rows = Transitions(*(arrays[name] for name in Transitions._fields))
        priorities = arrays.get("priorities")
        if priorities is not None and priorities.shape != (rows.rows,):
            raise ValueError(f"priorities: {priorities.shape[0]} for {rows.rows} rows")
        if snapshot.version == 1:
            if counters[0] != 1:
                raise ValueError(f"counters[0]: snapshot format {counters[0]}, expected 1")
            stored_capacity, inserted, sampled = counters[1:4]
        else:
            stored_capacity, inserted, sampled, next_slot = counters
            if rows.rows == stored_capacity and next_slot:  # a full ring: its oldest row is at next_slot
                rows = Transitions(*(np.concatenate([col[next_slot:], col[:next_slot]]) for col in rows))
                if priorities is not None:
                    priorities = np.concatenate([priorities[next_slot:], priorities[:next_slot]])
        buffer = cls(stored_capacity if capacity is None else capacity, seed)
        if priorities is not None:
            exponent, buffer._max_priority = (float(x) for x in arrays["priority_state"])
            if not (np.isfinite(priorities).all() and (priorities > 0).all() and exponent >= 0):
                raise ValueError("priorities: must be finite and > 0")
            buffer.prioritize(exponent)
        buffer.add(rows)
        if priorities is not None:
            kept = min(rows.rows, buffer.capacity)  # the newest rows, as add kept them
            buffer._priorities.set(np.arange(kept), priorities[rows.rows - kept:])
        buffer.total_inserted, buffer.total_sampled = inserted, sampled
        return buffer


class SamplesPerInsertLimiter:
    """Holds a shard's inserts back while they run ahead of sampling by more than `tolerance`.

    With ratio r, after I inserts and D draws credited to the shard an insert may proceed while
    I - D / r <= tolerance, or while fewer than `min_inserts` have arrived (warm-up). D is the
    shard's own draws or, once the learner reports the experiment's totals (E inserted, S
    sampled over all shards), the share S * I / E of them that its share of the inserts earns,
    whichever is more. Its own alone would not do across shards: the learner draws by priority
    mass, so one shard's draws lag what it was sent while the experiment as a whole is within
    the ratio, and that shard would hold its actors back for nothing. Never less than its own,
    so the rule is never stricter than one shard's, whose limit cannot hold while the
    learner's allowance waits on it (the tolerance covers a batch).
    """

    def __init__(self, samples_per_insert: float, min_inserts: int, tolerance: int):
        self._cond = threading.Condition()
        self._closed = False
        self._experiment: tuple[int, int] | None = None  # (inserted, sampled) over all shards
        self.held_back = 0  # inserts that had to wait (or gave up waiting): the learner was behind
        self.configure(samples_per_insert, min_inserts, tolerance)

    def configure(self, samples_per_insert: float, min_inserts: int, tolerance: int) -> None:
        """New settings (a re-opened experiment's); waiting inserts re-check under them, and
        the experiment's totals last reported still count."""
        with self._cond:
            self.samples_per_insert = samples_per_insert
            self.min_inserts = min_inserts
            self.tolerance = tolerance
            self._cond.notify_all()

    def credited_draws(self, buffer: ReplayBuffer) -> float:
        if self._experiment is None:
            return float(buffer.total_sampled)
        inserted, sampled = self._experiment
        return max(float(buffer.total_sampled), sampled * buffer.total_inserted / inserted)

    def _insert_allowed(self, buffer: ReplayBuffer) -> bool:
        inserted = buffer.total_inserted
        return (self._closed or inserted < self.min_inserts
                or inserted - self.credited_draws(buffer) / self.samples_per_insert <= self.tolerance)

    def wait_for_insert(self, buffer: ReplayBuffer, timeout: float) -> bool:
        """Blocks until an insert may proceed; False if `timeout` passed first."""
        with self._cond:
            if self._insert_allowed(buffer):
                return True
            self.held_back += 1
            return self._cond.wait_for(lambda: self._insert_allowed(buffer), timeout=timeout)

    def notify(self, experiment_inserted: int = 0, experiment_sampled: int = 0) -> None:
        """Called after a sample, with the experiment's totals if the learner sent them:
        waiting inserts re-check."""
        with self._cond:
            if experiment_inserted > 0:
                self._experiment = (experiment_inserted, experiment_sampled)
            self._cond.notify_all()

    def close(self) -> None:
        """Releases every waiter for good (shutdown)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
