"""Cancellation and timeouts: the one behaviour with no sync twin.

Whatever point a scope is cancelled at, the cancellation reaches the caller
unchanged (asyncio.timeout() turns it into TimeoutError), nothing the caller
did not see committed is committed, and the connection goes back to the pool.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import anyio
import pytest
from sqlalchemy import event, text

from sessionscope import AsyncSessionManager, CommitOutcomeUnknownError
from tests.faults import FaultProxy
from tests.models import User
from tests.support import Database

# A statement that keeps SQLite busy for seconds, writing while it runs.
SLOW_SQLITE_INSERT = (
    "INSERT INTO audit_records (message) "
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 30000000) "
    "SELECT 'x' FROM c WHERE x % 10000000 = 0"
)


# A statement that keeps SQLite busy for many seconds, only reading.
SLOW_SQLITE_SELECT = (
    "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 500000000) "
    "SELECT count(*) FROM c"
)


def slow_statement(database: Database, seconds: int = 5) -> str:
    return f"SELECT pg_sleep({seconds})" if database.is_postgres else SLOW_SQLITE_INSERT


async def test_a_timeout_in_the_body_rolls_back_and_propagates(
    manager: AsyncSessionManager, database: Database
) -> None:
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            async with manager.session_scope() as session:
                session.add(User(name="ada"))
                await session.flush()
                await session.execute(text(slow_statement(database)))
    assert time.monotonic() - started < 4
    assert database.count() == 0
    async with manager.session_scope() as session:  # the next scope can write at once
        session.add(User(name="bob"))
    assert database.names() == ["bob"]


async def test_cancelling_the_task_rolls_back_and_propagates(
    manager: AsyncSessionManager, database: Database
) -> None:
    entered = asyncio.Event()

    async def work() -> None:
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            await session.flush()
            entered.set()
            await asyncio.sleep(10)

    task = asyncio.create_task(work())
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert database.count() == 0


@pytest.mark.parametrize("backend", ["psycopg", "asyncpg"], indirect=True)
async def test_a_timeout_during_commit_still_returns_the_connection(
    manager: AsyncSessionManager, database: Database
) -> None:
    # A deferred constraint trigger makes COMMIT itself take a second.
    with database.observer.begin() as connection:
        connection.execute(
            text(
                "CREATE FUNCTION slow_commit() RETURNS trigger LANGUAGE plpgsql AS "
                "$$ BEGIN PERFORM pg_sleep(1); RETURN NULL; END $$"
            )
        )
        connection.execute(
            text(
                "CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON users "
                "DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION slow_commit()"
            )
        )
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                async with manager.session_scope() as session:
                    session.add(User(name="ada"))
                    await session.flush()  # the body ends at once; COMMIT takes the time
    finally:
        with database.observer.begin() as connection:
            connection.execute(text("DROP TRIGGER slow_commit ON users"))
            connection.execute(text("DROP FUNCTION slow_commit()"))
    assert manager.monitor.snapshot()["commit_outcome_unknown"] == 1
    # The drivers send a cancel request when the task is cancelled: the server
    # aborts the COMMIT. Wait until the backend is gone before looking.
    await manager.dispose()  # no client backend left: the server has finished with COMMIT
    await asyncio.sleep(1.2)  # longer than the trigger's sleep, in case it had not
    assert database.count() == 0


@pytest.mark.parametrize("backend", ["psycopg", "asyncpg"], indirect=True)
async def test_a_timeout_during_rollback_lets_the_cleanup_finish(database: Database) -> None:
    with FaultProxy(database.pg_server.host, database.pg_server.port) as proxy:
        manager = AsyncSessionManager(proxy.url(database.url))
        try:
            proxy.delay_forwarding(b"ROLLBACK", 0.5)
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    async with manager.session_scope() as session:
                        session.add(User(name="ada"))
                        await session.flush()
                        raise LookupError("the body fails: the scope rolls back")
            assert proxy.fired.is_set()  # the timeout fired while ROLLBACK was held back
            assert time.monotonic() - started >= 0.45  # and the cleanup still ran to its end
            assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await manager.dispose()
    assert database.count() == 0
    assert database.idle_in_transaction() == 0


async def test_an_anyio_cancel_scope_cancels_a_scope_cleanly(
    manager: AsyncSessionManager, database: Database
) -> None:
    with anyio.move_on_after(0.3) as cancel_scope:
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            await session.flush()
            # anyio cancels again and again: the drivers then close the connection
            # instead of cancelling the statement, which PostgreSQL runs to its end.
            await session.execute(text(slow_statement(database, seconds=1)))
    assert cancel_scope.cancelled_caught
    assert database.count() == 0
    async with manager.session_scope() as session:
        session.add(User(name="bob"))
    assert database.names() == ["bob"]


@pytest.mark.parametrize("how", ["timeout", "cancel"])
async def test_a_cancelled_long_read_after_a_write_releases_the_lock_at_once(
    manager: AsyncSessionManager, database: Database, how: str
) -> None:
    # SQLite rolls back an interrupted write, not an interrupted read: the write
    # before it keeps the database locked unless the transaction is ended.
    slow = "SELECT pg_sleep(30)" if database.is_postgres else SLOW_SQLITE_SELECT
    entered = asyncio.Event()

    async def write_then_read(name: str) -> None:
        async with manager.session_scope() as session:
            session.add(User(name=name))
            await session.flush()
            entered.set()
            await session.execute(text(slow))

    # Cancelled at once (the statement may still be queued in aiosqlite's
    # thread), and a little later (it is running).
    for n, delay in enumerate((0.0, 0.001, 0.01, 0.05, 0.1, 0.2)):
        entered.clear()
        if how == "timeout":
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(delay + 0.01):
                    await write_then_read(f"lost {n}")
        else:
            task = asyncio.create_task(write_then_read(f"lost {n}"))
            await entered.wait()
            await asyncio.sleep(delay)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        started = time.monotonic()
        async with manager.session_scope() as session:
            session.add(User(name=f"next {n}"))
        assert time.monotonic() - started < 1, "the next writer waited for the lock"
    assert database.names() == [f"next {n}" for n in range(6)]


@pytest.mark.parametrize("when", ["before_cursor_execute", "after_cursor_execute"])
async def test_a_task_cancelled_at_set_config_leaves_nothing_on_the_connection(
    database: Database, when: str
) -> None:
    # SQLAlchemy issue #13381: SET LOCAL, then a cancellation, returned the connection
    # to the pool with its transaction (and the setting) still open. Here the task is
    # cancelled exactly as the scope's set_config() statement is sent, or right after
    # it returned, on a pool of one connection; the next borrower must see neither.
    if not database.is_postgres:
        manager = AsyncSessionManager(database.url)
        with pytest.raises(Exception, match="settings="):
            manager.session_scope(settings={"app.tenant_id": 1})
        return await manager.dispose()
    manager = AsyncSessionManager(database.url, pool_size=1, max_overflow=0)
    task: asyncio.Task[None] | None = None

    def cancel_at_set_config(conn: object, cursor: object, statement: str, *args: object) -> None:
        if "set_config" in statement and task is not None:
            task.cancel()

    sync_engine = manager.engine.sync_engine
    event.listen(sync_engine, when, cancel_at_set_config)

    async def tenant_request() -> None:
        async with manager.session_scope(settings={"app.tenant_id": 1}) as session:
            session.add(User(name="never"))
            await session.flush()

    try:
        for _ in range(5):
            task = asyncio.create_task(tenant_request())
            with pytest.raises(asyncio.CancelledError):
                await task
            assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
            assert database.idle_in_transaction() == 0
        event.remove(sync_engine, when, cancel_at_set_config)
        async with manager.session_scope() as session:  # the pool's only connection
            assert await session.scalar(text("SELECT current_setting('app.tenant_id', true)")) in (
                None,
                "",
            )
            # A new transaction, not one left open: it has not written anything.
            assert await session.scalar(text("SELECT pg_current_xact_id_if_assigned()")) is None
    finally:
        await manager.dispose()
    assert database.count() == 0


async def test_a_deadline_running_out_while_commit_is_in_flight_leaves_the_outcome_unknown(
    database: Database,
) -> None:
    if not database.is_postgres:
        return  # SQLite's COMMIT is a call into the library, not a message that can be held
    with FaultProxy(database.pg_server.host, database.pg_server.port) as proxy:
        manager = AsyncSessionManager(proxy.url(database.url))
        try:

            @manager.with_session(deadline=0.5, idempotent=True, retry_attempts=3)
            async def write(session: Any) -> None:
                session.add(User(name="ada"))

            proxy.delay_forwarding(b"COMMIT", 1.0)  # held past the deadline (and the grace)
            with pytest.raises(CommitOutcomeUnknownError) as raised:
                await write()  # idempotent, yet not re-run: no time is left
            assert proxy.fired.is_set()
            assert isinstance(raised.value.__cause__, TimeoutError)
            assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await manager.dispose()
