"""``examples/rls_app.py``, end to end on PostgreSQL, with asyncpg and psycopg (async).

The app connects as a plain role, subject to the table's row-level security;
``session_dependency(manager, settings=...)`` sets ``app.tenant_id`` at the start
of each request's transaction. The observer here is the superuser, who bypasses
the policies and so sees every tenant's rows.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from examples import rls_app
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.pool import NullPool

from sessionscope import AsyncSessionManager
from tests.pg_server import PostgresServer

EXAMPLES = Path(__file__).parent.parent / "examples"
ACME = {"Authorization": "Bearer token-acme"}  # tenant 1
GLOBEX = {"Authorization": "Bearer token-globex"}  # tenant 2


@pytest.fixture(params=["asyncpg", "psycopg"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def observer(pg_server: PostgresServer) -> Iterator[Engine]:
    """The superuser, on a sync connection of its own: sees every tenant's rows."""
    engine = create_engine(pg_server.url("psycopg"), poolclass=NullPool)
    yield engine
    engine.dispose()


@pytest.fixture
async def admin_url(
    backend: str, pg_server: PostgresServer, observer: Engine
) -> AsyncIterator[str]:
    """The superuser's URL for ``backend``; the example's table, policy and role set up
    (after dropping any left over), and dropped again at the end."""
    url = pg_server.url(backend)
    await rls_app.drop_database_objects(url)
    await rls_app.setup_database(url)
    yield url
    # A failed test may have left the app's connections open (holding locks that
    # DROP TABLE would wait for): end them first.
    with observer.begin() as connection:
        connection.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = :role"),
            {"role": rls_app.APP_ROLE},
        )
    await rls_app.drop_database_objects(url)
    with observer.connect() as connection:
        assert connection.scalar(text("SELECT to_regclass('rls_notes')")) is None
        role = connection.scalar(
            text("SELECT count(*) FROM pg_roles WHERE rolname = :role"),
            {"role": rls_app.APP_ROLE},
        )
        assert role == 0


def all_notes(observer: Engine) -> list[tuple[int, str]]:
    """Every note, of every tenant: (tenant_id, body) in id order."""
    with observer.connect() as connection:
        rows = connection.execute(text("SELECT tenant_id, body FROM rls_notes ORDER BY id"))
        return [(row.tenant_id, row.body) for row in rows]


def client_of(app: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")


def bodies(response: httpx2.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [note["body"] for note in response.json()]


async def post_note(
    client: httpx2.AsyncClient, headers: dict[str, str], body: str, **extra: Any
) -> httpx2.Response:
    return await client.post("/notes", json={"body": body, **extra}, headers=headers)


# -- tenants -----------------------------------------------------------------------------


async def test_each_tenant_sees_only_its_own_notes(admin_url: str, observer: Engine) -> None:
    app, manager = rls_app.create_app(admin_url)
    try:
        async with client_of(app) as client:
            created = [
                await post_note(client, ACME, "acme 1"),
                await post_note(client, GLOBEX, "globex 1"),
                await post_note(client, ACME, "acme 2"),
            ]
            assert [response.status_code for response in created] == [201] * 3
            # tenant_id was filled in by the database, from the transaction's setting
            assert [response.json()["tenant_id"] for response in created] == [1, 2, 1]

            assert bodies(await client.get("/notes", headers=ACME)) == ["acme 1", "acme 2"]
            assert bodies(await client.get("/notes", headers=GLOBEX)) == ["globex 1"]
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await manager.dispose()
    assert all_notes(observer) == [(1, "acme 1"), (2, "globex 1"), (1, "acme 2")]


async def test_interleaved_requests_of_two_tenants_on_a_small_pool(
    admin_url: str, observer: Engine
) -> None:
    """Two connections shared by many concurrent requests of both tenants: each
    transaction has its own tenant, whichever connection it ran on before."""
    app, manager = rls_app.create_app(admin_url, pool_size=2, max_overflow=0)
    try:
        async with client_of(app) as client:
            created = await asyncio.gather(
                *(post_note(client, ACME if n % 2 else GLOBEX, f"note {n}") for n in range(20))
            )
            assert [response.status_code for response in created] == [201] * 20
            listings = await asyncio.gather(
                *(client.get("/notes", headers=h) for h in [ACME, GLOBEX] * 5)
            )
            acme_notes = {f"note {n}" for n in range(1, 20, 2)}
            globex_notes = {f"note {n}" for n in range(0, 20, 2)}
            for headers, response in zip([ACME, GLOBEX] * 5, listings, strict=True):
                mine = acme_notes if headers is ACME else globex_notes
                assert set(bodies(response)) == mine
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await manager.dispose()
    assert sorted(all_notes(observer)) == sorted(
        (1 if n % 2 else 2, f"note {n}") for n in range(20)
    )


# -- authentication ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": "Bearer no-such-token"},
        {"Authorization": "Basic token-acme"},
        {"Authorization": "token-acme"},
    ],
    ids=["no-header", "unknown-token", "other-scheme", "no-scheme"],
)
async def test_a_request_without_a_known_tenant_gets_401(
    admin_url: str, observer: Engine, headers: dict[str, str]
) -> None:
    app, manager = rls_app.create_app(admin_url)
    try:
        async with client_of(app) as client:
            for response in (
                await client.get("/notes", headers=headers),
                await post_note(client, headers, "anonymous"),
            ):
                assert response.status_code == 401
                assert response.json() == {"detail": "unknown tenant"}
                assert response.headers["www-authenticate"] == "Bearer"
        # The settings dependency failed before the session's: no scope was opened.
        assert manager.monitor.snapshot()["sessions"]["opened"] == 0
    finally:
        await manager.dispose()
    assert all_notes(observer) == []


# -- the policy's WITH CHECK -----------------------------------------------------------------


async def test_with_check_refuses_a_note_for_another_tenant(
    admin_url: str, observer: Engine
) -> None:
    app, manager = rls_app.create_app(admin_url)
    try:
        async with client_of(app) as client:
            response = await post_note(client, ACME, "for globex", tenant_id=2)
            assert (response.status_code, response.json()) == (403, {"detail": "not your tenant"})
            response = await post_note(client, ACME, "for acme", tenant_id=1)
            assert response.status_code == 201
            assert response.json()["tenant_id"] == 1
            assert bodies(await client.get("/notes", headers=ACME)) == ["for acme"]
            assert bodies(await client.get("/notes", headers=GLOBEX)) == []
        snapshot = manager.monitor.snapshot()
        assert snapshot["transactions"]["rolled_back"] == 1  # the refused one
        assert snapshot["sessions"]["active"] == 0
    finally:
        await manager.dispose()
    assert all_notes(observer) == [(1, "for acme")]


async def test_the_app_role_is_subject_to_row_level_security(admin_url: str) -> None:
    _, manager = rls_app.create_app(admin_url)
    try:
        async with manager.session_scope() as session:
            row = (
                await session.execute(
                    text(
                        "SELECT current_user, rolsuper, rolbypassrls FROM pg_roles"
                        " WHERE rolname = current_user"
                    )
                )
            ).one()
            assert tuple(row) == (rls_app.APP_ROLE, False, False)
            row = (
                await session.execute(
                    text(
                        "SELECT relrowsecurity, relforcerowsecurity FROM pg_class"
                        " WHERE oid = 'rls_notes'::regclass"
                    )
                )
            ).one()
            assert tuple(row) == (True, True)
    finally:
        await manager.dispose()


async def test_setup_runs_again_on_what_it_set_up(admin_url: str, observer: Engine) -> None:
    """Idempotent: the table (and its rows), policy and role exist already."""
    app, manager = rls_app.create_app(admin_url)
    try:
        async with client_of(app) as client:
            assert (await post_note(client, ACME, "kept")).status_code == 201
            await rls_app.setup_database(admin_url)
            assert bodies(await client.get("/notes", headers=ACME)) == ["kept"]
    finally:
        await manager.dispose()
    assert all_notes(observer) == [(1, "kept")]


# -- nothing outlives the request's transaction -------------------------------------------


async def plain_scope_view(manager: AsyncSessionManager) -> tuple[int, str | None, int]:
    """What a scope without settings sees: its backend's pid, the setting, the notes."""
    async with manager.session_scope() as session:
        row = (
            await session.execute(
                text(
                    "SELECT pg_backend_pid() AS pid,"
                    " current_setting('app.tenant_id', true) AS tenant,"
                    " (SELECT count(*) FROM rls_notes) AS notes"
                )
            )
        ).one()
        return row.pid, row.tenant, row.notes


async def test_the_tenant_never_leaks_to_the_next_user_of_the_connection(
    admin_url: str, observer: Engine
) -> None:
    # One connection, so the request and the scopes below all run on the same one.
    app, manager = rls_app.create_app(admin_url, pool_size=1, max_overflow=0)
    try:
        pid, tenant, notes = await plain_scope_view(manager)
        assert (tenant, notes) == (None, 0)  # never set on this connection
        async with client_of(app) as client:
            assert (await post_note(client, ACME, "secret")).status_code == 201
            assert bodies(await client.get("/notes", headers=ACME)) == ["secret"]
            after = await plain_scope_view(manager)
            # Set on this connection, then ended with the transaction: PostgreSQL
            # reads a custom setting that was once set as '' (the example's
            # policy takes '' as no tenant).
            assert after == (pid, "", 0)

            # A refused write (rolled back) leaves nothing behind either.
            response = await post_note(client, GLOBEX, "forged", tenant_id=1)
            assert response.status_code == 403
            assert await plain_scope_view(manager) == (pid, "", 0)

        # The same manager, given the setting itself, sees the tenant's rows.
        async with manager.session_scope(settings={"app.tenant_id": 1}) as session:
            assert (await session.execute(text("SELECT count(*) FROM rls_notes"))).scalar() == 1
        assert await plain_scope_view(manager) == (pid, "", 0)
    finally:
        await manager.dispose()
    assert all_notes(observer) == [(1, "secret")]


# -- the script's own demo ---------------------------------------------------------------


def test_the_example_runs_as_a_script(backend: str, pg_server: PostgresServer) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / "rls_app.py"), pg_server.url(backend)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [
        'acme sees: ["acme\'s plan"]',
        'globex sees: ["globex\'s plan"]',
        "acme writes for globex: 403 not your tenant",
        "no token: 401",
    ]
    with pg_server.connect() as connection:  # the demo dropped what it created
        assert connection.execute("SELECT to_regclass('rls_notes')").fetchone() == (None,)
        assert connection.execute(
            "SELECT count(*) FROM pg_roles WHERE rolname = %s", (rls_app.APP_ROLE,)
        ).fetchone() == (0,)
