"""A connection cut around COMMIT, through a real TCP proxy: known and unknown outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text

from sessionscope import AsyncSessionManager, CommitOutcomeUnknownError, SessionConfig
from sessionscope._async_compat import AsyncSession
from tests._async.conftest import POSTGRES_BACKENDS
from tests.faults import FaultProxy
from tests.models import LedgerEntry, User
from tests.support import Database

pytestmark = pytest.mark.parametrize("backend", POSTGRES_BACKENDS, indirect=True)

FAST = {"retry_delay": 0.01, "retry_max_delay": 0.05}


@pytest.fixture
def proxy(database: Database) -> Iterator[FaultProxy]:
    with FaultProxy(database.pg_server.host, database.pg_server.port) as proxy:
        yield proxy


@pytest.fixture
def proxied(database: Database, proxy: FaultProxy) -> Any:
    """A manager whose connections go through the proxy."""
    return AsyncSessionManager(
        proxy.url(database.url), config=SessionConfig(retry_delay=0.01, retry_max_delay=0.05)
    )


async def test_a_cut_after_commit_was_sent_is_reported_unknown_and_not_retried(
    proxied: AsyncSessionManager, proxy: FaultProxy, database: Database
) -> None:
    calls: list[int] = []

    @proxied.with_session(retry_attempts=3, **FAST)
    async def create_user(session: AsyncSession) -> None:
        calls.append(1)
        session.add(User(name="ada"))

    proxy.cut_after_forwarding(b"COMMIT")
    try:
        with pytest.raises(CommitOutcomeUnknownError) as raised:
            await create_user()
        assert raised.value.__cause__ is not None
        assert proxy.fired.is_set()
        assert calls == [1]
        snapshot = proxied.monitor.snapshot()
        assert snapshot["commit_outcome_unknown"] == 1
        assert snapshot["retries"]["total"] == 0
        assert proxied.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await proxied.dispose()
    proxy.wait_server_done()
    assert database.names() == ["ada"]  # it was committed: nobody could have known


async def test_a_cut_before_commit_was_forwarded_is_unknown_too(
    proxied: AsyncSessionManager, proxy: FaultProxy, database: Database
) -> None:
    proxy.cut_before_forwarding(b"COMMIT")
    try:
        with pytest.raises(CommitOutcomeUnknownError):
            async with proxied.session_scope() as session:
                session.add(User(name="ada"))
    finally:
        await proxied.dispose()
    proxy.wait_server_done()
    assert database.count() == 0  # this time it was not: the client cannot tell the two apart


async def test_idempotent_work_is_retried_after_an_unknown_outcome(
    proxied: AsyncSessionManager, proxy: FaultProxy, database: Database
) -> None:
    calls: list[int] = []

    @proxied.with_session(idempotent=True, retry_attempts=3, **FAST)
    async def transfer(session: AsyncSession, operation: str) -> str:
        calls.append(1)
        # The idempotency key: an operation already applied is not applied again.
        if await session.get(LedgerEntry, operation) is not None:
            return "already applied"
        session.add(LedgerEntry(operation_id=operation, source=1, target=2, amount=5))
        return "applied"

    proxy.cut_after_forwarding(b"COMMIT")
    try:
        assert await transfer("op-1") == "already applied"
        assert calls == [1, 1]
        assert proxied.monitor.snapshot()["retries"]["by_reason"] == {"commit_outcome_unknown": 1}
    finally:
        await proxied.dispose()
    assert database.count(LedgerEntry) == 1


async def test_a_connection_lost_before_commit_is_retried(
    proxied: AsyncSessionManager, proxy: FaultProxy, database: Database
) -> None:
    calls: list[int] = []

    @proxied.with_session(retry_attempts=3, **FAST)
    async def create_user(session: AsyncSession) -> None:
        calls.append(1)
        session.add(User(name="ada"))
        await session.flush()
        if len(calls) == 1:
            proxy.cut_all()  # the network goes away mid-transaction
            await session.execute(select(1))

    try:
        await create_user()
        assert calls == [1, 1]
    finally:
        await proxied.dispose()
    proxy.wait_server_done()
    assert database.names() == ["ada"]


async def test_a_commit_refused_by_the_server_is_definite(
    manager: AsyncSessionManager, database: Database
) -> None:
    # A deferred constraint fails at COMMIT: the server answered, so the
    # outcome is known (rolled back) and the error is the server's own.
    with database.observer.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE refs (user_name text REFERENCES users (name) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    try:
        with pytest.raises(Exception) as raised:
            async with manager.session_scope() as session:
                await session.execute(text("INSERT INTO refs VALUES ('nobody')"))
        assert not isinstance(raised.value, CommitOutcomeUnknownError)
        assert "foreign key" in str(raised.value).lower()
        assert manager.monitor.snapshot()["commit_outcome_unknown"] == 0
        assert database.scalar("SELECT count(*) FROM refs") == 0
    finally:
        with database.observer.begin() as connection:
            connection.execute(text("DROP TABLE refs"))
