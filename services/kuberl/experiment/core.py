"""Experiment bookkeeping: which replicas own which experiment."""

from __future__ import annotations

import threading


class ReplicaAssigner:
    """Experiments over environment replicas, round-robin (the seed's rule): each experiment takes the next `count` replicas of
    whatever replicas exist at the time of the call, wrapping around."""

    def __init__(self) -> None:
        self._cursor = 0
        self._lock = threading.Lock()

    def assign(self, available: list[str], count: int) -> list[str]:
        if not available:
            raise LookupError("no environment replica is reachable")
        count = min(count, len(available))
        with self._lock:
            start = self._cursor
            self._cursor += count
        return [available[(start + i) % len(available)] for i in range(count)]
