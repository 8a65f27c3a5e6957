# Generated from tests/_async/test_pgbouncer.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""Behind PgBouncer in transaction mode (README "Replicas, poolers and failover"):
many clients share few server connections, and nothing one client leaves on a
server connection reaches another. (test_scope.py and test_settings.py also run
through PgBouncer: THROUGH_PGBOUNCER.)"""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from sessionscope import SessionConfig
from sessionscope._sync import SessionManager
from tests._sync.conftest import PGBOUNCER_BACKENDS
from tests._sync_compat import run_concurrently
from tests.support import Database

through_pgbouncer = pytest.mark.parametrize("backend", PGBOUNCER_BACKENDS, indirect=True)

CLIENTS, SCOPES = 8, 25
SERVER = text("SELECT pg_backend_pid()")


def small_pool_manager(database: Database, **engine_options: Any) -> SessionManager:
    """A manager of the database PgBouncer serves with two server connections."""
    name = database.pg_server.dbname
    url = database.url.replace("/%s" % name, "/%s_small" % name)
    return SessionManager(
        url, config=SessionConfig(retry_attempts=0), pool_size=CLIENTS, **engine_options
    )


@through_pgbouncer
def test_prepared_statements_never_reach_another_client(database: Database) -> None:
    manager = small_pool_manager(database, **database.engine_options)
    servers: set[int] = set()

    def client() -> None:
        for n in range(SCOPES):  # the same statements, over and over: worth preparing
            with manager.session_scope() as session:
                servers.add((session.execute(SERVER)).scalar_one())
                value = (session.execute(text("SELECT :n + 1"), {"n": n})).scalar_one()
                assert value == n + 1

    try:
        results = run_concurrently(*([client] * CLIENTS))
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert len(servers) == 2  # every client's transactions moved between the two
    finally:
        manager.dispose()


@through_pgbouncer
def test_settings_never_reach_another_client(database: Database) -> None:
    manager = small_pool_manager(database, **database.engine_options)
    seen: list[tuple[Any, Any]] = []

    def tenant_client() -> None:
        for _ in range(SCOPES):
            with manager.session_scope(
                settings={"app.tenant_id": "7"}, statement_timeout=3
            ) as session:
                assert (
                    session.execute(text("SELECT current_setting('app.tenant_id')"))
                ).scalar_one() == "7"

    def other_client() -> None:
        for _ in range(SCOPES):
            with manager.session_scope() as session:
                row = (
                    session.execute(
                        text(
                            "SELECT current_setting('app.tenant_id', true),"
                            " current_setting('statement_timeout')"
                        )
                    )
                ).one()
                seen.append((row[0], row[1]))

    try:
        results = run_concurrently(*([tenant_client] * 4 + [other_client] * 4))
        assert [r for r in results if isinstance(r, BaseException)] == []
        assert len(seen) == 4 * SCOPES
        assert {value for value, _ in seen} <= {None, ""}
        assert {timeout for _, timeout in seen} == {"0"}
    finally:
        manager.dispose()


@pytest.mark.parametrize("backend", ["psycopg-pgbouncer"], indirect=True)
def test_without_the_driver_options_psycopg_fails_behind_pgbouncer(
    database: Database,
) -> None:
    """Why tests/support.py configures the drivers: psycopg prepares a statement
    after five runs, on a server connection the next transaction may not get."""
    # (asyncpg's default statement names did not collide in this test: not shown.)
    manager = small_pool_manager(database)
    errors: list[BaseException] = []

    def client() -> None:
        for n in range(SCOPES):
            try:
                with manager.session_scope() as session:
                    session.execute(text("SELECT :n + 1"), {"n": n})
            except Exception as error:
                errors.append(error)

    try:
        run_concurrently(*([client] * CLIENTS))
        assert errors, "psycopg's prepared statements never went astray"
        assert "prepared statement" in str(errors[0])
    finally:
        manager.dispose()
