"""The MySQL/MariaDB backend of the metrics store, through PyMySQL.

The password never travels in a URL, a command line or a log: it comes from
KUBERL_DATABASE_PASSWORD or the file named by KUBERL_DATABASE_PASSWORD_FILE (a mounted
Kubernetes Secret); a URL with one is refused.

TLS to the server comes from the URL: `?tls=off`, `?tls=required` (encrypted, the server's
certificate not checked) or `?tls=verify&ca=PATH` (checked against that CA and the host name).
The default is off for a server on loopback or a socket and required for any other.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pymysql

from kuberl.analytics.core import SQLStore, StoreUnavailable

_IDENTIFIER = re.compile(r"[A-Za-z0-9_]{1,64}")
# Errors that mean "the server is gone or unreachable", as opposed to a bad statement.
_CONNECTION_ERRORS = (pymysql.err.OperationalError, pymysql.err.InterfaceError, ConnectionError, OSError)

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS nodes (
        node_id INT AUTO_INCREMENT PRIMARY KEY,
        node_name VARCHAR(255) NOT NULL UNIQUE,
        node_type VARCHAR(255) NOT NULL,
        created_at DOUBLE NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    """CREATE TABLE IF NOT EXISTS metric_types (
        metric_type_id INT AUTO_INCREMENT PRIMARY KEY,
        name VARCHAR(255) NOT NULL UNIQUE,
        description VARCHAR(1024) NOT NULL DEFAULT ''
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    # DOUBLE, not the seed's FLOAT: a float32 column would round every stored return.
    """CREATE TABLE IF NOT EXISTS metrics (
        metric_id BIGINT AUTO_INCREMENT PRIMARY KEY,
        node_id INT NOT NULL,
        metric_type_id INT NOT NULL,
        value DOUBLE NOT NULL,
        experiment_id VARCHAR(128) NOT NULL,
        step BIGINT NOT NULL,
        timestamp DOUBLE NOT NULL,
        batch_id CHAR(32) NOT NULL,
        batch_row INT NOT NULL,
        INDEX metrics_by_experiment (experiment_id, metric_type_id, step),
        UNIQUE INDEX metrics_by_batch (batch_id, batch_row),
        FOREIGN KEY (node_id) REFERENCES nodes (node_id),
        FOREIGN KEY (metric_type_id) REFERENCES metric_types (metric_type_id)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
    # Beside the seed's schema: experiments deleted whose metrics are kept for the result retention.
    """CREATE TABLE IF NOT EXISTS released_experiments (
        experiment_id VARCHAR(128) NOT NULL PRIMARY KEY,
        released_at DOUBLE NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin""",
)


@dataclass(frozen=True)
class MySQLSettings:
    host: str
    port: int
    user: str
    database: str
    password: str = field(default="", repr=False)
    unix_socket: str | None = None
    tls: str = "off"  # one of TLS_MODES
    ca: str | None = None  # for tls=verify

    @classmethod
    def from_url(cls, url: str, environ: dict[str, str] | None = None) -> MySQLSettings:
        """mysql://USER@HOST[:PORT]/DATABASE[?unix_socket=PATH&tls=MODE&ca=PATH]; ValueError naming the part."""
        env = os.environ if environ is None else environ
        parts = urlsplit(url)
        if parts.password:
            raise ValueError("database URL: no password in the URL (it would show in `ps` and in logs); put it in "
                             "KUBERL_DATABASE_PASSWORD or in the file named by KUBERL_DATABASE_PASSWORD_FILE")
        if not parts.hostname:
            raise ValueError("database URL: a host is required (mysql://USER@HOST:PORT/DATABASE)")
        if not parts.username:
            raise ValueError("database URL: a user is required (mysql://USER@HOST:PORT/DATABASE)")
        database = parts.path.lstrip("/") or "rl_analytics"
        if not _IDENTIFIER.fullmatch(database):
            raise ValueError(f"database URL: database name {database!r} must be letters, digits and '_'")
        try:
            port = parts.port or 3306
        except ValueError:
            raise ValueError("database URL: the port must be a number") from None
        password = env.get("KUBERL_DATABASE_PASSWORD", "")
        password_file = env.get("KUBERL_DATABASE_PASSWORD_FILE")
        if not password and password_file:
            password = Path(password_file).read_text().rstrip("\n")
        query = parse_qs(parts.query)
        socket_path = query.get("unix_socket", [None])[0]
        tls = query.get("tls", ["off" if socket_path or _is_loopback(parts.hostname) else "required"])[0]
        if tls not in TLS_MODES:
            raise ValueError(f"database URL: tls={tls!r}; one of {', '.join(TLS_MODES)}")
        ca = query.get("ca", [None])[0]
        if tls == "verify" and not ca:
            raise ValueError("database URL: tls=verify needs ca=PATH (the server's CA certificate)")
        return cls(parts.hostname, port, unquote(parts.username), database, password, socket_path, tls, ca)

    def ssl_context(self) -> ssl.SSLContext | None:
        if self.tls == "off":
            return None
        if self.tls == "verify":
            return ssl.create_default_context(cafile=self.ca)
        context = ssl.create_default_context()
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        return context


TLS_MODES = ("off", "required", "verify")


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _MySQLTransaction:
    def __init__(self, store: MySQLStore):
        self.store = store

    def __enter__(self) -> Any:
        try:
            conn = self.store._connection()
            self.cursor = conn.cursor()
        except _CONNECTION_ERRORS as err:
            self.store._drop()
            raise StoreUnavailable(f"MySQL at {self.store.settings.host}:{self.store.settings.port}: {err}") from None
        return self.cursor

    def __exit__(self, exc_type: object, exc: object, _tb: object) -> bool:
        # Autocommit: each statement is atomic on its own (a batch is one multi-row INSERT), so a
        # batch with known node and metric ids costs one round trip and no COMMIT.
        if isinstance(exc, _CONNECTION_ERRORS):
            self.store._drop()
            raise StoreUnavailable(f"MySQL at {self.store.settings.host}:{self.store.settings.port}: {exc}") from None
        return False


class MySQLStore(SQLStore):
    """One connection (opened lazily, re-opened after a loss) behind the store's lock."""

    placeholder = "%s"
    insert_ignore = "INSERT IGNORE"
    on_repeated_row = " ON DUPLICATE KEY UPDATE batch_row = batch_row"

    def __init__(self, settings: MySQLSettings, connect_timeout: float = 5.0):
        super().__init__()
        self.settings = settings
        self.connect_timeout = connect_timeout
        self._conn: pymysql.connections.Connection | None = None
        self._schema_ready = False

    @classmethod
    def from_url(cls, url: str) -> MySQLStore:
        return cls(MySQLSettings.from_url(url))

    def _open(self, database: str | None) -> pymysql.connections.Connection:
        s = self.settings
        return pymysql.connect(host=s.host, port=s.port, user=s.user, password=s.password, database=database,
                               unix_socket=s.unix_socket, charset="utf8mb4", autocommit=True,
                               connect_timeout=self.connect_timeout, read_timeout=10, write_timeout=10,
                               **({"ssl": context} if (context := s.ssl_context()) else {"ssl_disabled": True}))

    def _connection(self) -> pymysql.connections.Connection:
        if self._conn is None:
            if not self._schema_ready:
                self._create_schema()
            self._conn = self._open(self.settings.database)
        return self._conn

    def _create_schema(self) -> None:
        """Database, tables and indexes, idempotently; a named lock keeps two analytics
        replicas starting together from racing on the DDL."""
        conn = self._open(None)
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE IF NOT EXISTS `{self.settings.database}` "
                            "CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
                cur.execute(f"USE `{self.settings.database}`")
                cur.execute("SELECT GET_LOCK('kuberl_analytics_schema', 30)")
                try:
                    for statement in SCHEMA:
                        cur.execute(statement)
                finally:
                    cur.execute("SELECT RELEASE_LOCK('kuberl_analytics_schema')")
        finally:
            conn.close()
        self._schema_ready = True

    def _drop(self) -> None:
        if self._conn is not None:
            # Closing a dead socket may fail in many ways; the connection is gone either way.
            with contextlib.suppress(Exception):
                self._conn.close()
        self._conn = None
        self._node_ids.clear()
        self._metric_ids.clear()

    def _cursor(self) -> _MySQLTransaction:
        return _MySQLTransaction(self)

    def connect(self) -> None:
        """Opens the connection now (and creates the schema); StoreUnavailable if it cannot."""
        with self._lock, self._cursor():
            pass

    def close(self) -> None:
        with self._lock:
            self._drop()
