"""The FastAPI examples, end to end, on SQLite and PostgreSQL.

``examples/migration_app.py``: old ``get_db()`` endpoints and new
``session_dependency`` endpoints side by side, sharing one decorated helper.
``examples/mixed_app.py``: an async API and a sync batch job on one database.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest
from examples import migration_app, mixed_app
from fastapi.testclient import TestClient
from sqlalchemy import Engine, create_engine, select
from sqlalchemy.pool import NullPool

from sessionscope import SessionManager

EXAMPLES = Path(__file__).parent.parent / "examples"
TABLES = [migration_app.Item.__table__, mixed_app.Order.__table__]


@dataclass
class Urls:
    sync: str
    async_: str
    observer: Engine


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def urls(backend: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Urls]:
    """One database, by the URLs of a sync and an async driver; the examples' tables empty."""
    if backend == "sqlite":
        path = tmp_path / "app.db"
        sync_url, async_url = f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}"
    else:
        pg_server = request.getfixturevalue("pg_server")
        sync_url, async_url = pg_server.url("psycopg"), pg_server.url("asyncpg")
    observer = create_engine(sync_url, poolclass=NullPool)
    with observer.begin() as connection:
        for table in TABLES:
            table.drop(connection, checkfirst=True)
    yield Urls(sync_url, async_url, observer)
    with observer.begin() as connection:
        for table in TABLES:
            table.drop(connection, checkfirst=True)
    observer.dispose()


def item_names(observer: Engine) -> list[str]:
    with observer.connect() as connection:
        return sorted(connection.scalars(select(migration_app.Item.name)))


def order_statuses(observer: Engine) -> list[str]:
    with observer.connect() as connection:
        return list(connection.scalars(select(mixed_app.Order.status).order_by("id")))


# -- migration_app ---------------------------------------------------------------------


def test_migration_app_runs_old_and_new_endpoints_side_by_side(urls: Urls) -> None:
    app, manager = migration_app.create_app(urls.sync)
    migration_app.Base.metadata.create_all(manager.engine)
    try:
        with TestClient(app) as client:
            response = client.post("/old/items", json=["apple", "pear"])
            assert (response.status_code, response.json()) == (200, ["apple", "pear"])
            response = client.post("/items", json=["plum"])
            assert (response.status_code, response.json()) == (200, ["plum"])
            assert client.get("/old/items").json() == ["apple", "pear", "plum"]
            assert client.get("/items").json() == ["apple", "pear", "plum"]

            # New endpoint: the helper's calls join the request's transaction, so
            # "fig" goes with the request when "apple" fails it.
            response = client.post("/items", json=["fig", "apple"])
            assert response.status_code == 409
            assert response.json() == {"detail": "item 'apple' exists"}
            # Old endpoint: the helper used get_db()'s session as is and did not
            # commit "kiwi" on its own; get_db() rolled it back.
            response = client.post("/old/items", json=["kiwi", "plum"])
            assert response.status_code == 409
            assert client.get("/items").json() == ["apple", "pear", "plum"]
            assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert item_names(urls.observer) == ["apple", "pear", "plum"]
        snapshot = manager.monitor.snapshot()
        # Only the new endpoints open the manager's scopes (POST twice, GET twice);
        # the helper called from old endpoints opened none of its own.
        assert snapshot["sessions"]["opened"] == snapshot["sessions"]["closed"] == 4
        assert snapshot["transactions"]["committed"] == 3
        assert snapshot["transactions"]["rolled_back"] == 1
    finally:
        manager.engine.dispose()  # the app's own engine: the manager only borrowed it


# -- mixed_app -------------------------------------------------------------------------


async def test_mixed_app_async_api_and_sync_batch_job(urls: Urls) -> None:
    mixed_app.create_tables(urls.sync)
    app, manager = mixed_app.create_api(urls.async_)
    batch = SessionManager(urls.sync)
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
            created = await asyncio.gather(
                *(client.post("/orders", params={"item": item}) for item in ("tea", "cups"))
            )
            assert [response.status_code for response in created] == [200, 200]
            assert order_statuses(urls.observer) == ["new", "new"]

            # The sync job, in a thread of its own, as another process would be.
            assert await asyncio.to_thread(mixed_app.ship_new_orders, batch) == 2
            assert await asyncio.to_thread(mixed_app.ship_new_orders, batch) == 0

            orders = (await client.get("/orders")).json()
            assert [order["status"] for order in orders] == ["shipped", "shipped"]
            order_id = created[0].json()["id"]
            response = await client.get(f"/orders/{order_id}")
            assert response.json()["status"] == "shipped"
            assert (await client.get("/orders/999999")).status_code == 404
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert batch.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        assert manager.monitor.snapshot()["sessions"]["active"] == 0
    finally:
        batch.dispose()
        await manager.dispose()
    assert order_statuses(urls.observer) == ["shipped", "shipped"]


def test_mixed_app_under_test_client_and_run_batch(urls: Urls) -> None:
    """The app's lifespan disposes its manager; the job's entry point takes a URL."""
    mixed_app.create_tables(urls.sync)
    app, manager = mixed_app.create_api(urls.async_)
    with TestClient(app) as client:
        for item in ("tea", "cups", "saucers"):
            assert client.post("/orders", params={"item": item}).status_code == 200
        assert mixed_app.run_batch(urls.sync) == 3
        assert [order["status"] for order in client.get("/orders").json()] == ["shipped"] * 3
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert order_statuses(urls.observer) == ["shipped"] * 3


# -- the scripts' own demos -------------------------------------------------------------


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("migration_app.py", "new POST, one exists: 409 item 'apple' exists"),
        ("mixed_app.py", "GET /orders: ['shipped', 'shipped', 'shipped']"),
    ],
)
def test_the_examples_run_as_scripts(script: str, expected: str) -> None:
    result = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout
