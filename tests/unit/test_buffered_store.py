"""The analytics queue in front of a real SQLite store whose writes are made to fail on purpose:
the flusher outlives every kind of error, and a batch refused for good does not block the rest."""

from __future__ import annotations

from kuberl.analytics.buffered import MAX_BATCH_FAILURES, BufferedStore
from kuberl.analytics.core import Point, Query, SQLiteStore, StoreUnavailable
from tests.waiting import wait_for


class FailingStore(SQLiteStore):
    """SQLite whose next writes raise what `failures` holds, in order."""

    def __init__(self) -> None:
        super().__init__(":memory:")
        self.failures: list[Exception] = []

    def write(self, node_name, node_type, points, batch_id=""):
        if self.failures:
            raise self.failures.pop(0)
        super().write(node_name, node_type, points, batch_id)


def points(experiment: str, n: int) -> list[Point]:
    return [Point(experiment, "charts/x", float(i), i) for i in range(n)]


def stored(backend: SQLiteStore, experiment: str) -> int:
    return len(backend.query(Query(experiment, "charts/x"))[0])


def test_the_flusher_survives_unexpected_errors_and_writes_in_order():
    backend = FailingStore()
    store = BufferedStore(backend, min_backoff=0.01, max_backoff=0.02)
    backend.failures = [StoreUnavailable("away"), RuntimeError("a driver bug"), KeyError("surprise")]
    store.write("n", "test", points("a", 3))  # queued: the database is away
    store.write("n", "test", points("b", 2))
    wait_for(lambda: store.queued_points == 0, 10, "the queue to drain")
    assert (stored(backend, "a"), stored(backend, "b")) == (3, 2)
    store.write("n", "test", points("c", 1))  # and it keeps working
    assert stored(backend, "c") == 1
    store.close()


def test_a_batch_refused_for_good_is_dropped_and_the_rest_go_through():
    backend = FailingStore()
    store = BufferedStore(backend, min_backoff=0.01, max_backoff=0.02)
    backend.failures = [StoreUnavailable("away")] + [ValueError("refused")] * MAX_BATCH_FAILURES
    store.write("n", "test", points("poison", 4))
    store.write("n", "test", points("fine", 2))
    wait_for(lambda: store.queued_points == 0, 10, "the queue to drain")
    assert (stored(backend, "poison"), stored(backend, "fine")) == (0, 2)
    store.close()


def test_a_release_keeps_the_metrics_for_the_retention_and_a_purge_does_not():
    backend = SQLiteStore(":memory:")
    store = BufferedStore(backend, result_retention_seconds=2.0)
    store.write("n", "test", points("kept", 3) + points("purged", 2))
    assert store.release("kept") == 0 and store.release("purged", purge=True) == 2
    store.write("n", "test", points("kept", 1))  # a late point of the released experiment is stored
    assert (stored(backend, "kept"), stored(backend, "purged")) == (4, 0)
    assert store.expire() == {}
    # The flusher sweeps about once a minute; called here once the retention has passed.
    wait_for(lambda: store.expire() == {"kept": 4}, 10, "the retention to pass")
    assert stored(backend, "kept") == 0
    store.close()

    unkept = BufferedStore(SQLiteStore(":memory:"), result_retention_seconds=0)
    unkept.write("n", "test", points("gone", 2))
    assert unkept.release("gone") == 2, "no retention: released is deleted"
    unkept.close()
