"""Scopes belong to the task that opened them."""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from sessionscope import AsyncSessionManager, NoActiveSessionError, current_session
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
