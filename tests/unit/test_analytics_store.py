import math
import sqlite3

import pytest

from kuberl.analytics.core import Point, Query, SQLiteStore, open_store


@pytest.fixture
def store(tmp_path):
    s = SQLiteStore(tmp_path / "a.db")
    yield s
    s.close()


def points(exp="exp", metric="loss", steps=range(5), node=""):
    return [Point(exp, metric, float(s) / 2, s, timestamp=1000.0 + s, node_name=node) for s in steps]


def tables(path):
    with sqlite3.connect(path) as db:
        return {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_schema_creation_is_idempotent(tmp_path):
    path = tmp_path / "sub" / "a.db"
    first = SQLiteStore(path)
    first.write("n1", "learner", points(steps=[1]))
    second = SQLiteStore(path)  # CREATE ... IF NOT EXISTS on an existing file
    second.write("n1", "learner", points(steps=[2]))
    got, total = second.query(Query("exp", "loss"))
    assert [p.step for p in got] == [1, 2] and total == 2
    assert {"nodes", "metric_types", "metrics"} <= tables(path)
    first.close()
    second.close()


def test_write_query_round_trip(store):
    store.write("learner-0", "learner", points(steps=[3, 1, 2]))
    got, total = store.query(Query("exp", "loss"))
    assert total == 3
    assert got == [Point("exp", "loss", 0.5, 1, 1001.0, "learner-0"),
                   Point("exp", "loss", 1.0, 2, 1002.0, "learner-0"),
                   Point("exp", "loss", 1.5, 3, 1003.0, "learner-0")]


def test_missing_timestamp_gets_now(store):
    import time
    before = time.time()
    store.write("n", "t", [Point("exp", "loss", 1.0, 0)])
    (p,), _ = store.query(Query("exp", "loss"))
    assert before <= p.timestamp <= time.time()


def test_query_separates_experiments_and_metrics(store):
    store.write("n", "t", points("a", "loss", [1, 2]) + points("a", "q", [1]) + points("b", "loss", [5]))
    assert [p.step for p in store.query(Query("a", "loss"))[0]] == [1, 2]
    assert [p.step for p in store.query(Query("a", "q"))[0]] == [1]
    assert [p.step for p in store.query(Query("b", "loss"))[0]] == [5]
    assert store.query(Query("c", "loss")) == ([], 0)


def test_query_filters(store):
    store.write("env-0", "environment", points(steps=range(0, 10)))
    store.write("env-1", "environment", points(steps=range(0, 10, 2)))
    got, total = store.query(Query("exp", "loss", node_name="env-1"))
    assert total == 5 and {p.node_name for p in got} == {"env-1"}
    got, total = store.query(Query("exp", "loss", min_step=3, max_step=6))
    assert total == 6 and sorted(p.step for p in got) == [3, 4, 4, 5, 6, 6]
    assert [p.step for p in got] == sorted(p.step for p in got)
    got, total = store.query(Query("exp", "loss", node_name="env-0", min_step=8))
    assert [p.step for p in got] == [8, 9] and total == 2


def test_limit_oldest_and_newest_first(store):
    store.write("n", "t", points(steps=range(20)))
    got, total = store.query(Query("exp", "loss", limit=3))
    assert [p.step for p in got] == [0, 1, 2] and total == 20
    got, total = store.query(Query("exp", "loss", limit=3, newest_first=True))
    assert [p.step for p in got] == [17, 18, 19] and total == 20  # the newest N, in ascending order
    got, total = store.query(Query("exp", "loss", limit=4, newest_first=True, max_step=10))
    assert [p.step for p in got] == [7, 8, 9, 10] and total == 11


def test_equal_steps_keep_insertion_order(store):
    store.write("n", "t", [Point("exp", "m", float(v), 7, 1.0) for v in range(4)])
    assert [p.value for p in store.query(Query("exp", "m"))[0]] == [0, 1, 2, 3]
    assert [p.value for p in store.query(Query("exp", "m", limit=2, newest_first=True))[0]] == [2, 3]


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_value_is_refused_and_nothing_written(store, value):
    batch = points(steps=[1, 2]) + [Point("exp", "loss", value, 3)]
    with pytest.raises(ValueError, match=r"points\[2\]\.value"):
        store.write("n", "t", batch)
    assert store.query(Query("exp", "loss")) == ([], 0)
    store.write("n", "t", points(steps=[4]))  # the store still works
    assert store.query(Query("exp", "loss"))[1] == 1


@pytest.mark.parametrize("bad, field", [(Point("", "loss", 1.0, 0), "experiment_id"),
                                        (Point("exp", "", 1.0, 0), "metric")])
def test_required_fields(store, bad, field):
    with pytest.raises(ValueError, match=rf"points\[0\]\.{field}"):
        store.write("n", "t", [bad])


def test_failed_transaction_rolls_back_and_store_recovers(store):
    store.write("n", "t", points(steps=[0]))
    # a value sqlite cannot bind fails inside the transaction, after node and metric rows were inserted
    with pytest.raises(Exception):
        store.write("new-node", "t", [Point("exp", "new-metric", 1.0, 1, node_name="x"),
                                      Point("exp", "new-metric", 1.0, object(), node_name="x")])
    assert store.query(Query("exp", "new-metric")) == ([], 0)
    store.write("new-node", "t", [Point("exp", "new-metric", 2.0, 5)])
    got, total = store.query(Query("exp", "new-metric", node_name="new-node"))
    assert total == 1 and got[0].value == 2.0


INJECTIONS = ["x'; DROP TABLE metrics; --", 'a" OR "1"="1', "robert'); DELETE FROM nodes;--", "%_\\"]


@pytest.mark.parametrize("evil", INJECTIONS)
def test_sql_injection_strings_are_stored_verbatim(tmp_path, evil):
    path = tmp_path / "a.db"
    store = SQLiteStore(path)
    store.write(evil, "t", [Point(evil, evil, 1.0, 3)])
    store.write("plain", "t", [Point("exp", "loss", 2.0, 4)])
    got, total = store.query(Query(evil, evil, node_name=evil))
    assert total == 1 and got == [Point(evil, evil, 1.0, 3, got[0].timestamp, evil)]
    assert store.query(Query("exp", "loss"))[1] == 1
    # a pattern-like string matches only itself
    assert store.query(Query("%", "%"))[1] == 0
    store.close()
    assert {"nodes", "metric_types", "metrics"} <= tables(path)


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///"])
def test_open_store_in_memory(url):
    store = open_store(url)
    store.write("n", "t", points(steps=[1, 2]))
    assert store.query(Query("exp", "loss"))[1] == 2
    store.close()
    assert open_store(url).query(Query("exp", "loss")) == ([], 0)  # nothing persisted


def test_open_store_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    store = open_store("sqlite:///rel/m.db")
    store.write("n", "t", points(steps=[1]))
    store.close()
    assert (tmp_path / "rel" / "m.db").exists()
    absolute = tmp_path / "abs" / "m.db"  # sqlite:////abs/path, as local.py builds it
    open_store(f"sqlite:///{absolute}").close()
    assert absolute.exists()


@pytest.mark.parametrize("url", ["postgres://x", "mysql://u@h/db", "", "sqlite:/x.db"])
def test_open_store_refuses_other_urls(url):
    with pytest.raises(ValueError, match="only sqlite"):
        open_store(url)
