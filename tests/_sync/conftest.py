# Generated from tests/_async/conftest.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""Fixtures of the flavour under test: the backend matrix and a manager per test.

After every test the manager must have no connection checked out and the
database no backend left idle in a transaction.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sessionscope import SessionConfig
from sessionscope._defaults import reset_default_managers
from sessionscope._sync import SessionManager
from sessionscope._sync_compat import IS_ASYNC
from tests.support import Database

BACKENDS = ("sqlite", "psycopg", "asyncpg") if IS_ASYNC else ("sqlite", "psycopg")
POSTGRES_BACKENDS = BACKENDS[1:]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    pg_server = None if backend == "sqlite" else request.getfixturevalue("pg_server")
    database = Database(backend, IS_ASYNC, tmp_path, pg_server)
    database.reset_schema()
    yield database
    database.close()


@pytest.fixture
def config() -> SessionConfig:
    # Retries back off for milliseconds, not seconds, in tests.
    return SessionConfig(log_level="DEBUG", retry_delay=0.01, retry_max_delay=0.05)


@pytest.fixture
def manager(database: Database, config: SessionConfig) -> Iterator[SessionManager]:
    manager = SessionManager(database.url, config=config)
    yield manager
    try:
        assert manager.engine.pool.checkedout() == 0, "a connection was left checked out"  # type: ignore[attr-defined]
        assert database.idle_in_transaction() == 0, "a backend was left idle in transaction"
    finally:
        manager.dispose()
        reset_default_managers()
