"""Fixtures for tests against real servers: a throwaway MariaDB, and a metrics-store URL
parametrised over both backends so that SQLite and MySQL must behave the same."""

from __future__ import annotations

import uuid

import pytest

from tests import mariadb as mariadb_server
from tests.conftest import skip_or_fail


@pytest.fixture(scope="session")
def mariadb():
    reason = mariadb_server.available()
    if reason:
        skip_or_fail(reason)
    server = mariadb_server.MariaDB.create()
    yield server
    server.destroy()


@pytest.fixture
def mysql_password(monkeypatch):
    monkeypatch.setenv("KUBERL_DATABASE_PASSWORD", mariadb_server.PASSWORD)


@pytest.fixture(params=["sqlite", "mysql"])
def store_url(request, tmp_path, monkeypatch) -> str:
    """A URL of an empty metrics store on each backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'metrics.db'}"
    server = request.getfixturevalue("mariadb")
    monkeypatch.setenv("KUBERL_DATABASE_PASSWORD", mariadb_server.PASSWORD)
    return server.url(f"t_{uuid.uuid4().hex[:12]}")
