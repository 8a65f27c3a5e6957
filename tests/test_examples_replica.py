"""``examples/replica_app.py`` against a real primary and streaming replica, with
asyncpg and psycopg (async): the commit token in a cookie lets a client read its
own write while the replica lags (its replay paused), and from the replica once
it has caught up."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from examples import replica_app

from sessionscope import AsyncSessionManager, SessionConfig
from tests.pg_server import PostgresServer


@pytest.fixture(params=["asyncpg", "psycopg"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def manager(
    backend: str, pg_server: PostgresServer, pg_replica: PostgresServer
) -> AsyncIterator[AsyncSessionManager]:
    manager = AsyncSessionManager(
        pg_server.url(backend),
        replicas=[pg_replica.url(backend)],
        config=SessionConfig(replica_wait=0.3, replica_check_interval=0, max_replica_lag=60),
    )
    async with manager.session_scope() as session:
        await session.run_sync(lambda s: replica_app.Base.metadata.drop_all(s.connection()))
        await session.run_sync(lambda s: replica_app.Base.metadata.create_all(s.connection()))
    pg_replica.wait_replayed(pg_server.current_lsn())
    yield manager
    async with manager.session_scope() as session:
        await session.run_sync(lambda s: replica_app.Base.metadata.drop_all(s.connection()))
    await manager.dispose()


def client_of(app: Any) -> httpx2.AsyncClient:
    return httpx2.AsyncClient(transport=httpx2.ASGITransport(app=app), base_url="http://test")


def engines(manager: AsyncSessionManager) -> dict[str, Any]:
    primary, replica = manager.monitor.snapshot()["engines"]
    return {"fallbacks": primary["fallbacks"], "on_replica": replica["routed"]}


async def test_a_client_reads_its_write_while_the_replica_lags(
    manager: AsyncSessionManager, pg_server: PostgresServer, pg_replica: PostgresServer
) -> None:
    app = replica_app.create_app(manager)
    async with client_of(app) as writer, client_of(app) as stranger:
        pg_replica.pause_replay()
        try:
            created = await writer.post("/items", json={"name": "first"})
            assert created.status_code == 201
            assert writer.cookies.get(replica_app.COOKIE)
            # The writer's cookie sends it to the primary: the replica has not replayed it.
            assert (await writer.get("/items")).json() == ["first"]
            assert engines(manager) == {"fallbacks": 1, "on_replica": 0}
            # Without the cookie: the replica, as it is (lag within max_replica_lag).
            assert (await stranger.get("/items")).json() == []
            assert engines(manager) == {"fallbacks": 1, "on_replica": 1}
        finally:
            pg_replica.resume_replay()
        pg_replica.wait_replayed(pg_server.current_lsn())
        # Caught up: the writer's read is the replica's now.
        assert (await writer.get("/items")).json() == ["first"]
        assert engines(manager) == {"fallbacks": 1, "on_replica": 2}


async def test_a_bad_cookie_is_a_clear_error(manager: AsyncSessionManager) -> None:
    app = replica_app.create_app(manager)
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=True)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        client.cookies.set(replica_app.COOKIE, "not-a-token")
        with pytest.raises(Exception, match="is not a commit token"):
            await client.get("/items")
