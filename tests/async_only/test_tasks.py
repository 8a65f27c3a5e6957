"""Scopes belong to the task that opened them."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession

from sessionscope import (
    AsyncSessionManager,
    ConcurrentSessionUseError,
    NoActiveSessionError,
    SessionManager,
    TransactionOwnershipError,
    current_session,
)
from tests.models import User
from tests.support import Database


async def test_a_task_started_inside_a_scope_gets_its_own_session(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> AsyncSession:
        session.add(User(name=name))
        return session

    async def current() -> object:
        try:
            return current_session()
        except NoActiveSessionError:
            return None

    with pytest.raises(RuntimeError):
        async with manager.session_scope() as outer:
            child_session = await asyncio.create_task(create_user("from a task"))
            assert child_session is not outer
            assert await asyncio.create_task(current()) is None
            raise RuntimeError("the parent rolls back; the task committed on its own")
    assert database.names() == ["from a task"]


async def test_one_session_used_by_two_tasks_at_once_is_refused(
    manager: AsyncSessionManager, database: Database
) -> None:
    slow = (
        "SELECT pg_sleep(0.3)"
        if database.is_postgres
        else "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 3000000)"
        " SELECT count(*) FROM c"
    )
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        first = asyncio.create_task(session.execute(text(slow)))
        await asyncio.sleep(0.05)  # the first task is now inside execute()
        with pytest.raises(ConcurrentSessionUseError, match="one operation at a time"):
            await asyncio.create_task(session.execute(select(User)))
        await first
        # One task after the other is fine.
        await asyncio.create_task(session.execute(select(User)))
    assert database.names() == ["ada"]


class Boom(Exception):
    pass


async def test_sync_scopes_belong_to_their_task(database: Database) -> None:
    # Sync code run by asyncio tasks interleaves in one thread at every await: a
    # task's sync scope is its own, not the one of the task it was started in.
    manager = SessionManager(database.observer_url)
    sessions: list[object] = []

    async def worker() -> None:
        with pytest.raises(Boom):
            with manager.session_scope() as mine:
                sessions.append(mine)
                mine.add(User(name="task"))
                await asyncio.sleep(0.05)
                raise Boom

    try:
        with manager.session_scope() as outer:
            outer.add(User(name="caller"))
            task = asyncio.create_task(worker())
            await asyncio.sleep(0.01)
        await task
        assert sessions and sessions[0] is not outer
        assert database.names() == ["caller"]
    finally:
        manager.dispose()


@pytest.mark.parametrize("propagation", ["required", "nested"])
async def test_a_sync_helper_cannot_commit_a_joined_scopes_transaction(
    manager: AsyncSessionManager, database: Database, propagation: str
) -> None:
    # run_sync() hands a legacy helper the sync session, whose commit() is SQLAlchemy's.
    with pytest.raises(TransactionOwnershipError):
        async with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            async with manager.session_scope(propagation=propagation) as inner:  # type: ignore[call-overload]
                await inner.run_sync(lambda sync_session: sync_session.commit())
    assert database.names() == []
