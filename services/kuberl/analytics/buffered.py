"""Keeps accepting metrics while the database is away.

A batch the database cannot take now goes into a bounded in-memory queue and is acknowledged;
a background thread reconnects with exponential backoff and flushes the queue in order. Nothing
acknowledged is lost while the queue has room, and a full queue refuses (RESOURCE_EXHAUSTED)
instead of dropping silently. Queries need the database and answer UNAVAILABLE without it.
The flusher survives any error; a batch refused MAX_BATCH_FAILURES times for another reason than
the database being away is dropped with an error line. It also forgets, about once a minute, the
metrics of experiments released longer ago than the result retention.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque

from kuberl.analytics.core import MetricsStore, Point, Query, StoreUnavailable, validate_batch
from kuberl.roles import DEFAULT_RESULT_RETENTION_SECONDS, checked_retention
from kuberl.rpc import Exhausted

log = logging.getLogger(__name__)
# A queued batch the database keeps refusing for another reason than being away is dropped
# after this many tries (logged), so that it cannot hold up every batch behind it.
MAX_BATCH_FAILURES = 5
EXPIRY_INTERVAL_SECONDS = 60.0


class BufferedStore:
    def __init__(self, backend: MetricsStore, max_queued_points: int = 100_000, min_backoff: float = 0.1,
                 max_backoff: float = 5.0, result_retention_seconds: float = DEFAULT_RESULT_RETENTION_SECONDS):
        self.backend = backend
        self.result_retention_seconds = checked_retention(result_retention_seconds)
        self.max_queued_points = max_queued_points
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        # (node name, node type, points, batch id): the id makes a retried batch land once.
        self._queue: deque[tuple[str, str, list[Point], str]] = deque()
        self._queued_points = 0
        self.points_received = 0
        self._head_failures = 0  # errors other than "unavailable" on the oldest queued batch
        # experiment id -> when it was deleted: points measured before that, still on their way
        # from a reporter's queue, are not stored after the delete.
        self._deleted_at: dict[str, float] = {}
        # Guards the queue; held across a direct write so that no queued batch is overtaken.
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._flusher = threading.Thread(target=self._flush_loop, name="metrics-flusher", daemon=True)
        self._flusher.start()

    @property
    def queued_points(self) -> int:
        return self._queued_points

    def write(self, node_name: str, node_type: str, points: list[Point], batch_id: str = "") -> None:
        validate_batch(node_name, node_type, points)
        if self._deleted_at:
            now = time.time()  # a point without a timestamp is measured now
            points = [p for p in points if (p.timestamp or now) > self._deleted_at.get(p.experiment_id, -1.0)]
        batch_id = batch_id or uuid.uuid4().hex
        with self._lock:
            self.points_received += len(points)
            if not self._queue:
                try:
                    self.backend.write(node_name, node_type, points, batch_id)
                    return
                except StoreUnavailable as err:
                    log.warning("database unavailable, queueing metrics: %s", err)
            if self._queued_points + len(points) > self.max_queued_points:
                raise Exhausted(f"the database is unavailable and {self._queued_points} metric points already wait "
                                f"(limit {self.max_queued_points}); retry later")
            self._queue.append((node_name, node_type, points, batch_id))
            self._queued_points += len(points)
        self._wake.set()

    def query(self, query: Query) -> tuple[list[Point], int]:
        # While batches wait the database is away (or they would be written): answer at once
        # rather than queue a read behind reconnect attempts.
        if self._queue:
            raise StoreUnavailable(f"the database is unavailable ({self._queued_points} metric points wait for it)")
        return self.backend.query(query)

    def delete_experiment(self, experiment_id: str) -> int:
        """Deletes the experiment's stored points and drops its queued ones."""
        with self._lock:
            self._deleted_at[experiment_id] = time.time()
            kept = [(n, t, [p for p in points if p.experiment_id != experiment_id], b)
                    for n, t, points, b in self._queue]
            self._queue.clear()
            self._queue.extend(batch for batch in kept if batch[2])
            self._queued_points = sum(len(batch[2]) for batch in self._queue)
        return self.backend.delete_experiment(experiment_id)

    def release(self, experiment_id: str, purge: bool = False) -> int:
        """The experiment is gone: its metrics stay for the result retention (points still on
        their way are stored too), unless `purge` or no retention; returns the points deleted now."""
        if purge or self.result_retention_seconds == 0:
            return self.delete_experiment(experiment_id)
        self.backend.mark_released(experiment_id, time.time())
        return 0

    def expire(self) -> dict[str, int]:
        """Forgets the metrics of experiments released longer ago than the retention."""
        expired = self.backend.expire_released(time.time() - self.result_retention_seconds)
        for experiment_id, points in expired.items():
            log.info("%s: released %.0fs ago or more; its %d metric points deleted", experiment_id,
                     self.result_retention_seconds, points)
        return expired

    def _flush_once(self) -> bool:
        """Writes queued batches oldest first; False when the database is still away."""
        while True:
            with self._lock:
                if not self._queue:
                    return True
                node_name, node_type, points, batch_id = self._queue[0]
            # Outside the lock: a reconnect may take seconds and writers must not wait for it.
            # The head stays queued until written, so new writes keep queueing behind it.
            try:
                self.backend.write(node_name, node_type, points, batch_id)
            except StoreUnavailable:
                return False
            except Exception:  # noqa: BLE001 - the flusher must outlive whatever the database says
                self._head_failures += 1
                if self._head_failures < MAX_BATCH_FAILURES:
                    log.exception("queued metrics not written (attempt %d of %d)", self._head_failures,
                                  MAX_BATCH_FAILURES)
                    return False
                log.exception("dropping a queued batch of %d metric points the database refused %d times",
                              len(points), self._head_failures)
            with self._lock:
                self._head_failures = 0
                self._queue.popleft()
                self._queued_points -= len(points)

    def _flush_loop(self) -> None:
        backoff = self.min_backoff
        expire_due = time.monotonic()
        while not self._closing.is_set():
            self._wake.wait(timeout=backoff if self._queue else max(0.0, expire_due - time.monotonic()))
            self._wake.clear()
            if time.monotonic() >= expire_due and not self._queue:
                expire_due = time.monotonic() + EXPIRY_INTERVAL_SECONDS
                try:
                    self.expire()
                except StoreUnavailable:
                    pass  # the next round, once it is back
                except Exception:  # noqa: BLE001 - as for writes: the flusher outlives the database
                    log.exception("forgetting expired metrics failed")
            if self._flush_once():
                if backoff > self.min_backoff:
                    log.info("database back; queued metrics flushed")
                backoff = self.min_backoff
            else:
                backoff = min(self.max_backoff, backoff * 2)

    def close(self) -> None:
        """Tries to flush what waits, then closes the backend."""
        self._closing.set()
        self._wake.set()
        self._flusher.join()
        if not self._flush_once():
            log.error("closing with %d metric points the database never took", self._queued_points)
        self.backend.close()
