"""The per-experiment objects of a role (rollouts, training runs, replay tables, records)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from kuberl.rpc import NotFound

T = TypeVar("T")


class Registry(Generic[T]):
    """A thread-safe map from experiment id to one role's object for it; unknown ids are NotFound."""

    def __init__(self, missing: str):
        self._missing = missing  # how NotFound ends: "... is not known to this learner"
        self._items: dict[str, T] = {}
        self._lock = threading.Lock()

    def get(self, experiment_id: str) -> T:
        with self._lock:
            item = self._items.get(experiment_id)
        if item is None:
            raise NotFound(f"experiment {experiment_id!r} {self._missing}")
        return item

    def find(self, experiment_id: str) -> T | None:
        with self._lock:
            return self._items.get(experiment_id)

    def get_or_create(self, experiment_id: str, factory: Callable[[], T]) -> T:
        """The existing object, or a new one; factory runs outside the lock (it may be slow)."""
        existing = self.find(experiment_id)
        if existing is not None:
            return existing
        item = factory()
        with self._lock:
            return self._items.setdefault(experiment_id, item)

    def put(self, experiment_id: str, item: T) -> None:
        with self._lock:
            self._items[experiment_id] = item

    def pop(self, experiment_id: str) -> T:
        with self._lock:
            item = self._items.pop(experiment_id, None)
        if item is None:
            raise NotFound(f"experiment {experiment_id!r} {self._missing}")
        return item

    def items(self) -> list[tuple[str, T]]:
        with self._lock:
            return list(self._items.items())

    def values(self) -> list[T]:
        with self._lock:
            return list(self._items.values())

    def clear(self) -> list[T]:
        with self._lock:
            items = list(self._items.values())
            self._items.clear()
        return items
