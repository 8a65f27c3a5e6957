"""Retries with real faults: what is re-run, what never is, and what is left behind."""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Any

import pytest
from sqlalchemy import func, select, text, update
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sessionscope import AsyncSessionManager, is_transient
from sessionscope._async_compat import AsyncSession
from tests._async.conftest import POSTGRES_BACKENDS
from tests._async_compat import Barrier, run_concurrently, wait_for_barrier
from tests.models import Account, User
from tests.support import Database

FAST = {"retry_delay": 0.01, "retry_max_delay": 0.05}


def on_postgres() -> Any:
    return pytest.mark.parametrize("backend", POSTGRES_BACKENDS, indirect=True)


def on_sqlite() -> Any:
    return pytest.mark.parametrize("backend", ["sqlite"], indirect=True)


def reasons(manager: AsyncSessionManager) -> dict[str, int]:
    by_reason: dict[str, int] = manager.monitor.snapshot()["retries"]["by_reason"]
    return by_reason


async def test_a_unique_violation_is_never_retried(
    manager: AsyncSessionManager, database: Database
) -> None:
    calls: list[str] = []

    @manager.with_session(retry_attempts=3, **FAST)
    async def create_user(session: AsyncSession, name: str) -> None:
        calls.append(name)
        session.add(User(name=name))

    await create_user("ada")
    with pytest.raises(IntegrityError):
        await create_user("ada")
    assert calls == ["ada", "ada"]
    assert reasons(manager) == {}
    assert database.names() == ["ada"]


async def test_a_non_transient_error_skips_the_fallback(manager: AsyncSessionManager) -> None:
    @manager.with_session(fallback=lambda error, *args: "fallback", **FAST)
    async def fail(session: AsyncSession) -> str:
        raise ValueError("not a database problem")

    with pytest.raises(ValueError, match="not a database problem"):
        await fail()


async def test_retry_on_extends_and_overrides_the_table(
    manager: AsyncSessionManager, database: Database
) -> None:
    calls: list[int] = []

    class Flaky(Exception):
        pass

    @manager.with_session(
        retry_attempts=2, retry_on=lambda e: True if isinstance(e, Flaky) else None, **FAST
    )
    async def flaky(session: AsyncSession) -> int:
        calls.append(1)
        session.add(User(name="try%d" % len(calls)))
        if len(calls) < 3:
            raise Flaky
        return len(calls)

    assert await flaky() == 3
    assert database.names() == ["try3"]  # the failed attempts left nothing behind
    assert reasons(manager) == {"retry_on": 2}

    @manager.with_session(retry_attempts=2, retry_on=lambda e: False, **FAST)
    async def never(session: AsyncSession) -> None:
        calls.append(1)
        raise Flaky

    calls.clear()
    with pytest.raises(Flaky):
        await never()
    assert calls == [1]


async def test_the_connection_is_back_in_the_pool_before_the_backoff(
    manager: AsyncSessionManager,
) -> None:
    checked_out_when_deciding: list[int] = []

    class Flaky(Exception):
        pass

    def decide(error: BaseException) -> bool:
        checked_out_when_deciding.append(manager.engine.pool.checkedout())  # type: ignore[attr-defined]
        return isinstance(error, Flaky)

    @manager.with_session(retry_attempts=2, retry_on=decide, **FAST)
    async def flaky(session: AsyncSession) -> None:
        await session.execute(select(1))  # holds a connection
        raise Flaky

    with pytest.raises(Flaky):
        await flaky()
    assert checked_out_when_deciding == [0, 0, 0]


async def test_exhausted_retries_raise_the_last_error_with_a_note_or_call_the_fallback(
    manager: AsyncSessionManager, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    class Flaky(Exception):
        pass

    def always(error: BaseException) -> bool:
        return isinstance(error, Flaky)

    @manager.with_session(retry_attempts=2, retry_on=always, **FAST)
    async def doomed(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))
        raise Flaky(name)

    with caplog.at_level(logging.WARNING, logger="sessionscope"):
        with pytest.raises(Flaky) as raised:
            await doomed("ada")
    assert any("3 attempts" in note for note in raised.value.__notes__)
    assert [r.levelname for r in caplog.records if "retry" in r.getMessage()] == ["WARNING"] * 2

    seen: list[Any] = []

    def degrade(error: BaseException, name: str) -> str:
        seen.append((type(error), name))
        return "degraded"

    @manager.with_session(retry_attempts=1, retry_on=always, fallback=degrade, **FAST)
    async def degraded(session: AsyncSession, name: str) -> str:
        raise Flaky(name)

    assert await degraded(name="bob") == "degraded"
    assert seen == [(Flaky, "bob")]
    assert database.count() == 0


async def test_retries_happen_only_where_the_transaction_is_owned(
    manager: AsyncSessionManager,
) -> None:
    inner_calls: list[int] = []
    outer_calls: list[int] = []

    class Flaky(Exception):
        pass

    def flaky(error: BaseException) -> bool:
        return isinstance(error, Flaky)

    @manager.with_session(retry_attempts=3, retry_on=flaky, **FAST)
    async def inner(session: AsyncSession) -> None:
        inner_calls.append(1)
        if len(inner_calls) == 1:
            raise Flaky

    @manager.with_session(retry_attempts=3, retry_on=flaky, **FAST)
    async def outer(session: AsyncSession) -> None:
        outer_calls.append(1)
        await inner()

    await outer()
    assert (len(outer_calls), len(inner_calls)) == (2, 2)  # the outer one re-ran both

    # A with-block never re-runs its body.
    inner_calls.clear()
    with pytest.raises(Flaky):
        async with manager.session_scope():
            await inner()
    assert len(inner_calls) == 1


@on_postgres()
async def test_a_serialization_failure_is_retried_and_applied_once(
    manager: AsyncSessionManager, database: Database
) -> None:
    barrier = Barrier(2)
    calls: list[str] = []

    @manager.with_session(isolation_level="SERIALIZABLE", retry_attempts=5, **FAST)
    async def register(session: AsyncSession, name: str) -> None:
        calls.append(name)
        seen = (await session.execute(select(func.count()).select_from(User))).scalar_one()
        if calls.count(name) == 1:
            await wait_for_barrier(barrier)  # both have read before either writes
        session.add(User(name="%s saw %d" % (name, seen)))

    results = await run_concurrently(lambda: register("a"), lambda: register("b"))
    assert results == [None, None]
    assert len(calls) == 3
    assert reasons(manager) == {"serialization_failure": 1}
    assert sorted(name.split()[-1] for name in database.names()) == ["0", "1"]


@on_postgres()
async def test_a_deadlock_is_retried_and_both_succeed(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as session:
        session.add_all([Account(id=1, balance=0), Account(id=2, balance=0)])
    barrier = Barrier(2)
    calls: list[int] = []

    @manager.with_session(retry_attempts=5, **FAST)
    async def touch(session: AsyncSession, first: int, second: int) -> None:
        calls.append(first)
        await session.execute(
            update(Account).where(Account.id == first).values(balance=Account.balance + 1)
        )
        if calls.count(first) == 1:
            await wait_for_barrier(barrier)  # each holds one lock and wants the other's
        await session.execute(
            update(Account).where(Account.id == second).values(balance=Account.balance + 1)
        )

    results = await run_concurrently(lambda: touch(1, 2), lambda: touch(2, 1))
    assert results == [None, None]
    assert reasons(manager) == {"deadlock": 1}
    assert (
        database.scalar("SELECT string_agg(balance::text, ',' ORDER BY id) FROM accounts") == "2,2"
    )


@on_postgres()
async def test_a_statement_timeout_is_never_retried(
    manager: AsyncSessionManager, database: Database
) -> None:
    calls: list[int] = []

    @manager.with_session(retry_attempts=3, **FAST)
    async def slow(session: AsyncSession) -> None:
        calls.append(1)
        await session.execute(text("SET LOCAL statement_timeout = 50"))
        await session.execute(text("SELECT pg_sleep(2)"))

    with pytest.raises(DBAPIError) as raised:  # asyncpg's is not an OperationalError
        await slow()
    assert not is_transient(raised.value)
    assert calls == [1]


@on_postgres()
async def test_a_terminated_backend_is_retried_with_exactly_one_effect(
    manager: AsyncSessionManager, database: Database
) -> None:
    calls: list[int] = []

    @manager.with_session(retry_attempts=3, **FAST)
    async def create_user(session: AsyncSession) -> None:
        calls.append(1)
        session.add(User(name="ada"))
        await session.flush()
        if len(calls) == 1:
            pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            database.scalar("SELECT pg_terminate_backend(%d)" % pid)
            await session.execute(text("SELECT 1"))  # the connection is gone

    await create_user()
    assert calls == [1, 1]
    assert reasons(manager) == {"connection": 1}
    assert database.names() == ["ada"]


@on_postgres()
async def test_the_next_call_after_a_restart_succeeds(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session(retry_attempts=3, **FAST)
    async def create_user(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))

    await create_user("before")
    database.pg_server.restart()
    await create_user("after")  # the pooled connection is dead: retried on a new one
    assert database.names() == ["after", "before"]


@on_postgres()
async def test_a_stopped_server_is_retried_with_backoff_then_given_up(
    manager: AsyncSessionManager, database: Database
) -> None:
    calls: list[int] = []

    @manager.with_session(retry_attempts=2, **FAST)
    async def create_user(session: AsyncSession) -> None:
        calls.append(1)
        session.add(User(name="ada"))

    database.pg_server.stop()
    try:
        # asyncpg's refused connection comes through unwrapped (ConnectionRefusedError).
        with pytest.raises((OperationalError, ConnectionRefusedError)) as raised:
            await create_user()
        assert any("3 attempts" in note for note in raised.value.__notes__)
        assert calls == []  # never got a connection: the body never ran
        assert reasons(manager) == {"connection": 2}
        # A with-block retries getting its connection (per the config), then gives up too.
        with pytest.raises((OperationalError, ConnectionRefusedError)):
            async with manager.session_scope():
                pass
        assert reasons(manager) == {"connection": 2 + manager.config.retry_attempts}
    finally:
        database.pg_server.start()
    await create_user()
    assert database.names() == ["ada"]


async def test_an_exhausted_pool_fails_clearly_and_is_not_retried(database: Database) -> None:
    calls: list[int] = []
    async with AsyncSessionManager(
        database.url, pool_size=1, max_overflow=0, pool_timeout=0.2
    ) as manager:

        @manager.with_session(propagation="requires_new", retry_attempts=3, **FAST)
        async def audit(session: AsyncSession) -> None:
            calls.append(1)

        async with manager.session_scope():  # holds the only connection
            with pytest.raises(PoolTimeoutError):
                await audit()
        assert calls == []
        assert reasons(manager) == {}
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


def _hold_sqlite_write_lock(path: str, seconds: float) -> threading.Thread:
    """Another connection takes the write lock now and releases it after ``seconds``."""
    holder = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")

    def release() -> None:
        threading.Event().wait(seconds)
        holder.execute("ROLLBACK")
        holder.close()

    thread = threading.Thread(target=release)
    thread.start()
    return thread


@on_sqlite()
async def test_a_held_sqlite_write_lock_is_retried(database: Database) -> None:
    path = database.observer_url.split("///", 1)[1]
    async with AsyncSessionManager(database.url, connect_args={"timeout": 0.05}) as manager:

        @manager.with_session(retry_attempts=20, **FAST)
        async def create_user(session: AsyncSession) -> None:
            session.add(User(name="ada"))

        holder = _hold_sqlite_write_lock(path, 0.3)
        try:
            await create_user()
        finally:
            holder.join()
        assert reasons(manager)["sqlite_busy"] >= 1
    assert database.names() == ["ada"]


@on_sqlite()
async def test_a_stale_wal_snapshot_busy_snapshot_is_retried(database: Database) -> None:
    path = database.observer_url.split("///", 1)[1]
    database.scalar("PRAGMA journal_mode=WAL")
    calls: list[int] = []
    async with AsyncSessionManager(database.url, connect_args={"timeout": 0.05}) as manager:

        @manager.with_session(retry_attempts=3, **FAST)
        async def read_then_write(session: AsyncSession) -> None:
            calls.append(1)
            seen = (await session.execute(select(func.count()).select_from(User))).scalar_one()
            if len(calls) == 1:  # another connection commits after our snapshot was taken
                other = sqlite3.connect(path)
                other.execute("INSERT INTO users (name) VALUES ('other')")
                other.commit()
                other.close()
            session.add(User(name="saw %d" % seen))

        await read_then_write()
    assert calls == [1, 1]
    assert reasons(manager) == {"sqlite_busy": 1}
    assert database.names() == ["other", "saw 1"]


@on_postgres()
async def test_with_pool_pre_ping_a_with_block_survives_a_restart(database: Database) -> None:
    async with AsyncSessionManager(database.url, pool_pre_ping=True) as manager:
        async with manager.session_scope() as session:
            session.add(User(name="before"))
        database.pg_server.restart()
        async with manager.session_scope() as session:
            session.add(User(name="after"))
    assert database.names() == ["after", "before"]


async def test_the_note_is_added_once_however_often_the_error_is_raised(
    manager: AsyncSessionManager,
) -> None:
    class Flaky(Exception):
        pass

    shared = Flaky("the same object every time")

    @manager.with_session(retry_attempts=1, retry_on=lambda error: error is shared, **FAST)
    async def doomed(session: AsyncSession) -> None:
        raise shared

    for _ in range(3):
        with pytest.raises(Flaky):
            await doomed()
    assert shared.__notes__ == [
        "sessionscope: %s gave up after 2 attempts (retry_on)" % (doomed.__qualname__)
    ]
