"""The metrics store: the seed's normalised schema (nodes, metric_types, metrics) behind a
small interface, with SQLite as the embedded backend.

Names and ids are always bound parameters, never spliced into SQL.
"""

from __future__ import annotations

import math
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True)
class Point:
    experiment_id: str
    metric: str
    value: float
    step: int
    timestamp: float = 0.0
    node_name: str = ""


@dataclass(frozen=True)
class Query:
    experiment_id: str
    metric: str
    node_name: str = ""
    min_step: int | None = None
    max_step: int | None = None
    limit: int = 0
    newest_first: bool = False


class MetricsStore(Protocol):
    def write(self, node_name: str, node_type: str, points: list[Point]) -> None:
        """Stores a batch in one transaction."""

    def query(self, query: Query) -> tuple[list[Point], int]:
        """Matching points in step order (the newest `limit` when newest_first) and the match count."""

    def close(self) -> None: ...


def validate_points(points: list[Point]) -> None:
    """ValueError naming the first point that cannot be stored."""
    for i, p in enumerate(points):
        if not p.experiment_id:
            raise ValueError(f"points[{i}].experiment_id: required")
        if not p.metric:
            raise ValueError(f"points[{i}].metric: required")
        if not math.isfinite(p.value):
            raise ValueError(f"points[{i}].value: must be finite, got {p.value}")


SCHEMA = (
    """CREATE TABLE IF NOT EXISTS nodes (
        node_id INTEGER PRIMARY KEY AUTOINCREMENT,
        node_name TEXT NOT NULL UNIQUE,
        node_type TEXT NOT NULL,
        created_at REAL NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS metric_types (
        metric_type_id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL UNIQUE,
        description TEXT NOT NULL DEFAULT '')""",
    """CREATE TABLE IF NOT EXISTS metrics (
        metric_id INTEGER PRIMARY KEY AUTOINCREMENT,
        node_id INTEGER NOT NULL REFERENCES nodes(node_id),
        metric_type_id INTEGER NOT NULL REFERENCES metric_types(metric_type_id),
        value REAL NOT NULL,
        experiment_id TEXT NOT NULL,
        step INTEGER NOT NULL,
        timestamp REAL NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS metrics_by_experiment ON metrics (experiment_id, metric_type_id, step)",
)


class SQLiteStore:
    """The embedded backend: one file (or ':memory:'), WAL mode, one connection behind a lock."""

    def __init__(self, path: str | Path):
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            for statement in SCHEMA:
                self._db.execute(statement)
        self._node_ids: dict[str, int] = {}
        self._metric_ids: dict[str, int] = {}

    def _id(self, cache: dict[str, int], insert: str, select: str, key: str, *extra: object) -> int:
        if key not in cache:
            self._db.execute(insert, (key, *extra))
            cache[key] = self._db.execute(select, (key,)).fetchone()[0]
        return cache[key]

    def write(self, node_name: str, node_type: str, points: list[Point]) -> None:
        validate_points(points)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                node_id = self._id(self._node_ids,
                                   "INSERT OR IGNORE INTO nodes (node_name, node_type, created_at) VALUES (?, ?, ?)",
                                   "SELECT node_id FROM nodes WHERE node_name = ?", node_name, node_type, now)
                rows = [(node_id,
                         self._id(self._metric_ids, "INSERT OR IGNORE INTO metric_types (name) VALUES (?)",
                                  "SELECT metric_type_id FROM metric_types WHERE name = ?", p.metric),
                         p.value, p.experiment_id, p.step, p.timestamp or now) for p in points]
                self._db.executemany("INSERT INTO metrics (node_id, metric_type_id, value, experiment_id, step, "
                                     "timestamp) VALUES (?, ?, ?, ?, ?, ?)", rows)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                self._node_ids.clear()  # ids inserted in the rolled-back transaction are gone
                self._metric_ids.clear()
                raise

    def query(self, query: Query) -> tuple[list[Point], int]:
        where = ["m.experiment_id = ?", "t.name = ?"]
        args: list[object] = [query.experiment_id, query.metric]
        if query.node_name:
            where.append("n.node_name = ?")
            args.append(query.node_name)
        if query.min_step is not None:
            where.append("m.step >= ?")
            args.append(query.min_step)
        if query.max_step is not None:
            where.append("m.step <= ?")
            args.append(query.max_step)
        body = (" FROM metrics m JOIN metric_types t ON t.metric_type_id = m.metric_type_id "
                "JOIN nodes n ON n.node_id = m.node_id WHERE " + " AND ".join(where))
        order = "DESC" if query.newest_first else "ASC"
        select = (f"SELECT m.experiment_id, t.name, m.value, m.step, m.timestamp, n.node_name{body} "
                  f"ORDER BY m.step {order}, m.metric_id {order}")
        select_args = list(args)
        if query.limit > 0:
            select += " LIMIT ?"
            select_args.append(query.limit)
        with self._lock:
            total = self._db.execute("SELECT COUNT(*)" + body, args).fetchone()[0]
            rows = self._db.execute(select, select_args).fetchall()
        points = [Point(*row) for row in rows]
        if query.newest_first:
            points.reverse()
        return points, int(total)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(url: str) -> MetricsStore:
    """A store from a URL: `sqlite:///path/to/file.db`, `sqlite://` (in memory)."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        return SQLiteStore(path[1:] if path.startswith("/") and len(path) > 1 else ":memory:")
    raise ValueError(f"database URL {url!r}: only sqlite:///PATH is supported")
