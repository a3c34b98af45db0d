"""The metrics store on both backends (SQLite file, real MariaDB server): the same behaviour."""

from __future__ import annotations

import math
import sqlite3
import threading
import time
import uuid

import pymysql
import pytest

from kuberl.analytics.core import Point, Query, open_store
from kuberl.analytics.mysql import MySQLSettings, MySQLStore

INJECTIONS = ["x'; DROP TABLE metrics; --", 'a" OR "1"="1', "robert'); DELETE FROM nodes;--", "%_\\",
              "ünïcødé ✓ `backtick`"]


def points(exp="exp", metric="loss", steps=range(5), node=""):
    return [Point(exp, metric, float(s) / 2, s, timestamp=1000.0 + s, node_name=node) for s in steps]


def table_names(url: str) -> set[str]:
    if url.startswith("sqlite"):
        with sqlite3.connect(url.removeprefix("sqlite:///")) as db:
            return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    s = MySQLSettings.from_url(url)
    with pymysql.connect(host=s.host, port=s.port, user=s.user, password=s.password, database=s.database,
                         ssl_disabled=True) as conn, conn.cursor() as cur:
        cur.execute("SHOW TABLES")
        return {row[0] for row in cur.fetchall()}


@pytest.fixture
def store(store_url):
    s = open_store(store_url)
    yield s
    s.close()


def test_schema_creation_is_idempotent(store_url):
    first = open_store(store_url)
    first.write("n1", "learner", points(steps=[1]))
    second = open_store(store_url)  # CREATE ... IF NOT EXISTS over an existing schema
    second.write("n1", "learner", points(steps=[2]))
    got, total = second.query(Query("exp", "loss"))
    assert [p.step for p in got] == [1, 2] and total == 2
    assert {"nodes", "metric_types", "metrics"} <= table_names(store_url)
    first.close()
    second.close()


def test_schema_creation_is_safe_when_two_stores_start_at_once(store_url):
    stores = [open_store(store_url) for _ in range(4)]
    errors: list[BaseException] = []

    def first_write(s, i):
        try:
            s.write(f"analytics-{i}", "analytics", points(steps=[i]))
        except BaseException as err:  # collected: a thread's exception would vanish
            errors.append(err)

    threads = [threading.Thread(target=first_write, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert stores[0].query(Query("exp", "loss"))[1] == 4
    for s in stores:
        s.close()


def test_batched_write_and_query_round_trip(store):
    store.write("learner-0", "learner", points(steps=[3, 1, 2]))
    got, total = store.query(Query("exp", "loss"))
    assert total == 3
    assert got == [Point("exp", "loss", 0.5, 1, 1001.0, "learner-0"),
                   Point("exp", "loss", 1.0, 2, 1002.0, "learner-0"),
                   Point("exp", "loss", 1.5, 3, 1003.0, "learner-0")]


def test_missing_timestamp_gets_now_and_values_keep_double_precision(store):
    before = time.time()
    store.write("n", "t", [Point("exp", "loss", 1 / 3, 0)])
    (p,), _ = store.query(Query("exp", "loss"))
    assert before - 1 <= p.timestamp <= time.time() + 1
    assert p.value == 1 / 3


def test_query_separates_experiments_metrics_and_case(store):
    store.write("n", "t", points("a", "loss", [1, 2]) + points("a", "q", [1]) + points("b", "loss", [5])
                + points("A", "loss", [9]))
    assert [p.step for p in store.query(Query("a", "loss"))[0]] == [1, 2]
    assert [p.step for p in store.query(Query("a", "q"))[0]] == [1]
    assert [p.step for p in store.query(Query("b", "loss"))[0]] == [5]
    assert [p.step for p in store.query(Query("A", "loss"))[0]] == [9]  # ids are case-sensitive
    assert store.query(Query("c", "loss")) == ([], 0)


def test_query_filters_by_node_and_step_range(store):
    store.write("env-0", "environment", points(steps=range(0, 10)))
    store.write("env-1", "environment", points(steps=range(0, 10, 2)))
    got, total = store.query(Query("exp", "loss", node_name="env-1"))
    assert total == 5 and {p.node_name for p in got} == {"env-1"}
    got, total = store.query(Query("exp", "loss", min_step=3, max_step=6))
    assert total == 6 and [p.step for p in got] == [3, 4, 4, 5, 6, 6]
    got, total = store.query(Query("exp", "loss", node_name="env-0", min_step=8))
    assert [p.step for p in got] == [8, 9] and total == 2


def test_limit_oldest_and_newest_first(store):
    store.write("n", "t", points(steps=range(20)))
    got, total = store.query(Query("exp", "loss", limit=3))
    assert [p.step for p in got] == [0, 1, 2] and total == 20
    got, total = store.query(Query("exp", "loss", limit=3, newest_first=True))
    assert [p.step for p in got] == [17, 18, 19] and total == 20
    got, total = store.query(Query("exp", "loss", limit=4, newest_first=True, max_step=10))
    assert [p.step for p in got] == [7, 8, 9, 10] and total == 11


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_value_is_refused_and_nothing_written(store, value):
    with pytest.raises(ValueError, match=r"points\[2\]\.value"):
        store.write("n", "t", points(steps=[1, 2]) + [Point("exp", "loss", value, 3)])
    assert store.query(Query("exp", "loss")) == ([], 0)
    store.write("n", "t", points(steps=[4]))
    assert store.query(Query("exp", "loss"))[1] == 1


@pytest.mark.parametrize("bad, field", [(Point("", "loss", 1.0, 0), "experiment_id"),
                                        (Point("exp", "", 1.0, 0), "metric"),
                                        (Point("e" * 129, "loss", 1.0, 0), "experiment_id"),
                                        (Point("exp", "m" * 256, 1.0, 0), "metric")])
def test_bad_fields_are_refused_on_every_backend_alike(store, bad, field):
    with pytest.raises(ValueError, match=rf"points\[0\]\.{field}"):
        store.write("n", "t", [bad])
    assert store.query(Query(bad.experiment_id or "exp", bad.metric or "loss")) == ([], 0)


def test_a_failed_batch_writes_nothing_and_the_store_recovers(store):
    store.write("n", "t", points(steps=[0]))
    with pytest.raises(Exception):  # a step no driver can bind fails inside the batch
        store.write("new-node", "t", [Point("exp", "new-metric", 1.0, 1), Point("exp", "new-metric", 1.0, object())])
    assert store.query(Query("exp", "new-metric")) == ([], 0)
    store.write("new-node", "t", [Point("exp", "new-metric", 2.0, 5)])
    got, total = store.query(Query("exp", "new-metric", node_name="new-node"))
    assert total == 1 and got[0].value == 2.0


@pytest.mark.parametrize("evil", INJECTIONS)
def test_sql_injection_in_every_string_field_is_stored_verbatim(store_url, evil):
    store = open_store(store_url)
    store.write(evil, evil, [Point(evil, evil, 1.0, 3)])
    store.write("plain", "t", [Point("exp", "loss", 2.0, 4)])
    got, total = store.query(Query(evil, evil, node_name=evil))
    assert total == 1 and got == [Point(evil, evil, 1.0, 3, got[0].timestamp, evil)]
    assert store.query(Query("exp", "loss"))[1] == 1
    assert store.query(Query("%", "%"))[1] == 0  # a pattern-like string matches only itself
    store.close()
    assert {"nodes", "metric_types", "metrics"} <= table_names(store_url)


def test_concurrent_writers_lose_nothing(store_url):
    """Two stores (as two analytics replicas would hold) with four writer threads each."""
    stores = [open_store(store_url) for _ in range(2)]
    errors: list[BaseException] = []

    def writer(s, w):
        try:
            for b in range(25):
                s.write(f"node-{w}", "environment", [Point("exp", f"m{w % 3}", float(i), b * 100 + i)
                                                     for i in range(100)])
        except BaseException as err:
            errors.append(err)

    threads = [threading.Thread(target=writer, args=(stores[w % 2], w)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    totals = [stores[0].query(Query("exp", f"m{k}"))[1] for k in range(3)]
    assert totals == [3 * 2500, 3 * 2500, 2 * 2500]
    for w in range(8):
        assert stores[1].query(Query("exp", f"m{w % 3}", node_name=f"node-{w}"))[1] == 2500
    for s in stores:
        s.close()


def test_mysql_store_reports_an_unreachable_server_as_unavailable(mysql_password):
    from kuberl.analytics.core import StoreUnavailable

    store = MySQLStore.from_url("mysql://kuberl@127.0.0.1:1/rl_analytics")
    with pytest.raises(StoreUnavailable):
        store.write("n", "t", points(steps=[1]))
    with pytest.raises(StoreUnavailable):
        store.query(Query("exp", "loss"))


def test_a_batch_written_twice_is_stored_once(store):
    """A retry after a write whose answer was lost (its commit may have happened) adds nothing."""
    batch = points(steps=[1, 2, 3])
    store.write("n", "t", batch, batch_id="b" * 32)
    store.write("n", "t", batch, batch_id="b" * 32)
    store.write("n", "t", batch)  # a new batch, the same values: stored again
    assert store.query(Query("exp", "loss"))[1] == 6


@pytest.mark.parametrize("tls", ["verify", "required", "off"])
def test_mysql_over_tls_as_the_url_says(mariadb, mysql_password, tls):
    query = {"verify": f"?tls=verify&ca={mariadb.ca}", "required": "?tls=required", "off": "?tls=off"}[tls]
    url = mariadb.url(f"t_{uuid.uuid4().hex[:12]}") + query
    store = MySQLStore.from_url(url)
    store.write("n", "test", points())
    assert len(store.query(Query("exp", "loss"))[0]) == 5
    with store._cursor() as cur:
        cur.execute("SHOW SESSION STATUS LIKE 'Ssl_cipher'")
        cipher = cur.fetchone()[1]
    store.close()
    assert bool(cipher) == (tls != "off"), cipher


def test_a_released_experiments_metrics_stay_until_the_retention_has_passed(store):
    store.write("n1", "learner", points(exp="gone", steps=range(3)) + points(exp="live", steps=range(2)))
    store.mark_released("gone", 5000.0)
    store.mark_released("gone", 9000.0)  # a repeated release keeps the first one's time
    store.write("n1", "learner", points(exp="gone", steps=[3]))  # its last points, still on their way
    assert store.query(Query("gone", "loss"))[1] == 4
    assert store.expire_released(5000.0) == {}, "released at 5000: kept until after it"
    assert store.expire_released(5000.5) == {"gone": 4}
    assert store.query(Query("gone", "loss"))[1] == 0 and store.query(Query("live", "loss"))[1] == 2
    assert store.expire_released(1e12) == {}, "released once, forgotten once"

    # Deleting outright (a purge) forgets the release too.
    store.write("n1", "learner", points(exp="again", steps=[1]))
    store.mark_released("again", 100.0)
    assert store.delete_experiment("again") == 1 and store.expire_released(1e12) == {}
