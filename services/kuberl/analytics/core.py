"""The metrics store: the seed's normalised schema (nodes, metric_types, metrics) behind a small
interface, with two backends that share every statement but their dialect: SQLite (embedded
default) and MySQL/MariaDB (through PyMySQL, in `kuberl.analytics.mysql`).

Names and ids are always bound parameters, never spliced into SQL.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from kuberl.rpc import Unavailable

log = logging.getLogger(__name__)

MAX_NAME_LENGTH = 255
MAX_EXPERIMENT_ID_LENGTH = 128


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


class StoreUnavailable(Unavailable):
    """The database cannot be reached now; the same call may work later."""


class MetricsStore(Protocol):
    def write(self, node_name: str, node_type: str, points: list[Point], batch_id: str = "") -> None:
        """Stores a batch atomically, in one round trip where the backend allows. Writing the
        same batch_id again stores nothing more (a retry after an unclear failure is safe)."""

    def query(self, query: Query) -> tuple[list[Point], int]:
        """Matching points in step order (the newest `limit` when newest_first) and the match count."""

    def delete_experiment(self, experiment_id: str) -> int:
        """Deletes every point of the experiment; returns how many."""

    def mark_released(self, experiment_id: str, released_at: float) -> None:
        """Keeps the experiment's points until expire_released passes its release time."""

    def expire_released(self, released_before: float) -> dict[str, int]:
        """Deletes the points of experiments released before then; points deleted per experiment."""

    def close(self) -> None: ...


def validate_batch(node_name: str, node_type: str, points: list[Point]) -> None:
    """ValueError naming the first field that cannot be stored (the same limits on every backend)."""
    if not node_name:
        raise ValueError("node_name: required")
    for field, value in (("node_name", node_name), ("node_type", node_type)):
        if len(value) > MAX_NAME_LENGTH:
            raise ValueError(f"{field}: at most {MAX_NAME_LENGTH} characters")
    for i, p in enumerate(points):
        if not p.experiment_id or len(p.experiment_id) > MAX_EXPERIMENT_ID_LENGTH:
            raise ValueError(f"points[{i}].experiment_id: 1 to {MAX_EXPERIMENT_ID_LENGTH} characters")
        if not p.metric or len(p.metric) > MAX_NAME_LENGTH:
            raise ValueError(f"points[{i}].metric: 1 to {MAX_NAME_LENGTH} characters")
        if not math.isfinite(p.value):
            raise ValueError(f"points[{i}].value: must be finite, got {p.value}")
        if not math.isfinite(p.timestamp):
            raise ValueError(f"points[{i}].timestamp: must be finite, got {p.timestamp}")


class SQLStore:
    """Everything but the connection: id caches, the batched insert, the filtered query.

    Subclasses give `_cursor()` (a context manager yielding a DB-API cursor inside one
    transaction) and the dialect's placeholder and INSERT-IGNORE spelling.
    """

    placeholder = "?"
    insert_ignore = "INSERT OR IGNORE"
    # Ignores only a repeated (batch_id, batch_row); any other error in a row still fails the batch.
    on_repeated_row = " ON CONFLICT (batch_id, batch_row) DO NOTHING"

    def __init__(self) -> None:
        self._node_ids: dict[str, int] = {}
        self._metric_ids: dict[str, int] = {}
        self._lock = threading.Lock()

    def _cursor(self) -> Any:
        raise NotImplementedError

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.placeholder)

    def _ids(self, cur: Any, cache: dict[str, int], table: str, key_column: str, id_column: str,
             other_columns: tuple[str, ...], rows: dict[str, tuple]) -> None:
        """Fills cache for every key of rows (key -> other columns' values), inserting the new ones."""
        missing = [key for key in rows if key not in cache]
        if not missing:
            return
        columns = [key_column, *other_columns]
        marks = ", ".join("?" * len(columns))
        cur.executemany(self._sql(f"{self.insert_ignore} INTO {table} ({', '.join(columns)}) VALUES ({marks})"),
                        [(key, *rows[key]) for key in missing])
        marks = ", ".join("?" * len(missing))
        cur.execute(self._sql(f"SELECT {key_column}, {id_column} FROM {table} WHERE {key_column} IN ({marks})"),
                    missing)
        cache.update({key: int(ident) for key, ident in cur.fetchall()})

    def write(self, node_name: str, node_type: str, points: list[Point], batch_id: str = "") -> None:
        validate_batch(node_name, node_type, points)
        if not points:
            return
        batch_id = batch_id or uuid.uuid4().hex
        now = time.time()
        with self._lock:
            try:
                with self._cursor() as cur:
                    self._ids(cur, self._node_ids, "nodes", "node_name", "node_id", ("node_type", "created_at"),
                              {node_name: (node_type, now)})
                    self._ids(cur, self._metric_ids, "metric_types", "name", "metric_type_id", (),
                              {p.metric: () for p in points})
                    node_id = self._node_ids[node_name]
                    # (batch_id, batch_row) is unique: a batch written twice (its first attempt
                    # committed, but the connection died before the answer) is stored once.
                    cur.executemany(self._sql(
                        "INSERT INTO metrics (node_id, metric_type_id, value, experiment_id, step, timestamp, "
                        "batch_id, batch_row) VALUES (?, ?, ?, ?, ?, ?, ?, ?)" + self.on_repeated_row),
                        [(node_id, self._metric_ids[p.metric], p.value, p.experiment_id, p.step, p.timestamp or now,
                          batch_id, row) for row, p in enumerate(points)])
            except BaseException:
                # Ids first seen in a rolled-back transaction may not exist.
                self._node_ids.clear()
                self._metric_ids.clear()
                raise

    def delete_experiment(self, experiment_id: str) -> int:
        """Deletes every metric point of the experiment; returns how many."""
        with self._lock, self._cursor() as cur:
            return self._delete(cur, experiment_id)

    def _delete(self, cur: Any, experiment_id: str) -> int:
        cur.execute(self._sql("DELETE FROM released_experiments WHERE experiment_id = ?"), (experiment_id,))
        cur.execute(self._sql("DELETE FROM metrics WHERE experiment_id = ?"), (experiment_id,))
        return cur.rowcount

    def mark_released(self, experiment_id: str, released_at: float) -> None:
        """Records the experiment's release: its points stay until expire_released passes that
        time (a second release keeps the first one's time)."""
        with self._lock, self._cursor() as cur:
            cur.execute(self._sql(f"{self.insert_ignore} INTO released_experiments (experiment_id, released_at) "
                                  "VALUES (?, ?)"), (experiment_id, released_at))

    def expire_released(self, released_before: float) -> dict[str, int]:
        """Deletes the points of experiments released before that time; returns how many each."""
        with self._lock, self._cursor() as cur:
            cur.execute(self._sql("SELECT experiment_id FROM released_experiments WHERE released_at < ?"),
                        (released_before,))
            return {experiment_id: self._delete(cur, experiment_id) for (experiment_id,) in cur.fetchall()}

    def query(self, query: Query) -> tuple[list[Point], int]:
        where = ["m.experiment_id = ?", "t.name = ?"]
        args: list[object] = [query.experiment_id, query.metric]
        for clause, value in (("n.node_name = ?", query.node_name or None), ("m.step >= ?", query.min_step),
                              ("m.step <= ?", query.max_step)):
            if value is not None:
                where.append(clause)
                args.append(value)
        body = (" FROM metrics m JOIN metric_types t ON t.metric_type_id = m.metric_type_id "
                "JOIN nodes n ON n.node_id = m.node_id WHERE " + " AND ".join(where))
        order = "DESC" if query.newest_first else "ASC"
        select = (f"SELECT m.experiment_id, t.name, m.value, m.step, m.timestamp, n.node_name{body} "
                  f"ORDER BY m.step {order}, m.metric_id {order}")
        select_args = list(args)
        if query.limit > 0:
            select += " LIMIT ?"
            select_args.append(query.limit)
        with self._lock, self._cursor() as cur:
            cur.execute(self._sql("SELECT COUNT(*)" + body), args)
            total = int(cur.fetchone()[0])
            cur.execute(self._sql(select), select_args)
            rows = cur.fetchall()
        points = [Point(e, m, float(v), int(s), float(t), n) for e, m, v, s, t, n in rows]
        if query.newest_first:
            points.reverse()
        return points, total


SQLITE_SCHEMA = (
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
        timestamp REAL NOT NULL,
        batch_id TEXT NOT NULL,
        batch_row INTEGER NOT NULL)""",
    "CREATE INDEX IF NOT EXISTS metrics_by_experiment ON metrics (experiment_id, metric_type_id, step)",
    "CREATE UNIQUE INDEX IF NOT EXISTS metrics_by_batch ON metrics (batch_id, batch_row)",
    # Beside the seed's schema: experiments deleted whose metrics are kept for the result retention.
    """CREATE TABLE IF NOT EXISTS released_experiments (
        experiment_id TEXT PRIMARY KEY,
        released_at REAL NOT NULL)""",
)


class _SQLiteTransaction:
    def __init__(self, db: sqlite3.Connection):
        self.db = db
        self.cursor: sqlite3.Cursor | None = None

    def __enter__(self) -> sqlite3.Cursor:
        self.db.execute("BEGIN")
        self.cursor = self.db.cursor()
        return self.cursor

    def __exit__(self, exc_type: object, *_: object) -> None:
        # Closed here, under the store's lock: a cursor left to the garbage collector resets its
        # statement whenever the caller's frame goes, after the lock is released, while another
        # thread uses the connection (CI saw "bad parameter or other API misuse").
        self.cursor.close()
        self.db.execute("ROLLBACK" if exc_type else "COMMIT")


class SQLiteStore(SQLStore):
    """The embedded backend: one file (or ':memory:'), WAL mode, one connection behind a lock."""

    def __init__(self, path: str | Path):
        super().__init__()
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = self._open(path)
        except sqlite3.DatabaseError as err:  # not a database (damaged, truncated, someone else's): start anew
            if str(path) == ":memory:":
                raise
            aside = Path(f"{path}.corrupt")
            os.replace(path, aside)
            for journal in ("-wal", "-shm"):  # a damaged file's journal belongs with it
                if Path(f"{path}{journal}").exists():
                    os.replace(f"{path}{journal}", f"{aside}{journal}")
            log.error("metrics database %s cannot be used (%s); moved to %s, starting a new one", path, err, aside)
            self._db = self._open(path)

    @staticmethod
    def _open(path: str | Path) -> sqlite3.Connection:
        db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            for statement in SQLITE_SCHEMA:
                db.execute(statement)
        except sqlite3.DatabaseError:
            db.close()
            raise
        return db

    def _cursor(self) -> _SQLiteTransaction:
        return _SQLiteTransaction(self._db)

    def close(self) -> None:
        with self._lock:
            self._db.close()


def open_store(url: str) -> MetricsStore:
    """A store from a URL: `sqlite:///relative.db`, `sqlite:////absolute.db`, `sqlite://` (in
    memory), or `mysql://user@host:3306/rl_analytics` (password from KUBERL_DATABASE_PASSWORD
    or the file named by KUBERL_DATABASE_PASSWORD_FILE)."""
    if url.startswith("sqlite://"):
        path = url[len("sqlite://"):]
        return SQLiteStore(path[1:] if path.startswith("/") and len(path) > 1 else ":memory:")
    if url.startswith(("mysql://", "mariadb://")):
        from kuberl.analytics.mysql import MySQLStore

        return MySQLStore.from_url(url)
    raise ValueError(f"database URL {redact_url(url)!r}: use sqlite:///PATH or mysql://USER@HOST:PORT/DATABASE")


def redact_url(url: str) -> str:
    """The URL with any password replaced, for logs and messages."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not sep or not at or ":" not in credentials:
        return url
    return f"{scheme}://{credentials.split(':', 1)[0]}:***@{host}"
