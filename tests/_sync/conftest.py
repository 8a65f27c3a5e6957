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
from tests.support import PGBOUNCER_SUFFIX, Database

BACKENDS = ("sqlite", "psycopg", "asyncpg") if IS_ASYNC else ("sqlite", "psycopg")
POSTGRES_BACKENDS = BACKENDS[1:]
# A module that sets THROUGH_PGBOUNCER = True runs on these too: PostgreSQL behind
# PgBouncer in transaction mode, with each driver configured for it.
PGBOUNCER_BACKENDS = tuple(name + PGBOUNCER_SUFFIX for name in POSTGRES_BACKENDS)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    for marker in metafunc.definition.iter_markers("parametrize"):
        if marker.args and marker.args[0] == "backend":
            return  # the test chose its backends itself
    backends = BACKENDS
    if getattr(metafunc.module, "THROUGH_PGBOUNCER", False):
        backends = BACKENDS + PGBOUNCER_BACKENDS
    metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def database(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Database]:
    pg_server = None if backend == "sqlite" else request.getfixturevalue("pg_server")
    pg_bouncer = None
    if backend.endswith(PGBOUNCER_SUFFIX):
        pg_bouncer = request.getfixturevalue("pg_bouncer")
    database = Database(backend, IS_ASYNC, tmp_path, pg_server, pg_bouncer)
    database.reset_schema()
    yield database
    database.close()


@pytest.fixture
def config() -> SessionConfig:
    # Retries back off for milliseconds, not seconds, in tests.
    return SessionConfig(log_level="DEBUG", retry_delay=0.01, retry_max_delay=0.05)


@pytest.fixture
def manager(database: Database, config: SessionConfig) -> Iterator[SessionManager]:
    manager = SessionManager(database.url, config=config, **database.engine_options)
    yield manager
    try:
        assert manager.engine.pool.checkedout() == 0, "a connection was left checked out"  # type: ignore[attr-defined]
        if manager._read_engine:  # the read-only fast path's, on the primary
            assert manager._read_engine.pool.checkedout() == 0, "a read connection was left out"
        assert database.idle_in_transaction() == 0, "a backend was left idle in transaction"
    finally:
        manager.dispose()
        reset_default_managers()
