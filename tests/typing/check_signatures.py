"""Checked by mypy (nox -s typecheck), never run: decorators keep signatures.

Each ``assert_type`` states what a type checker must infer; a wrong one fails
the typecheck session.
"""

from __future__ import annotations

from typing import assert_type

from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sessionscope import (
    AsyncSessionManager,
    AsyncSessionScope,
    SessionManager,
    SessionScope,
    async_with_session,
    with_session,
)

sync_manager = SessionManager("sqlite://")
async_manager = AsyncSessionManager("sqlite+aiosqlite://")


@sync_manager.with_session
def create(session: Session, name: str, *, admin: bool = False) -> int:
    return len(name)


@sync_manager.with_session(propagation="nested", retry_attempts=2)
def create_nested(session: Session, name: str) -> str:
    return name


@with_session
def create_default(session: Session, name: str) -> str:
    return name


@async_manager.with_session
async def create_async(session: AsyncSession, name: str) -> int:
    return len(name)


@async_with_session(propagation="requires_new")
async def create_async_default(session: AsyncSession, name: str) -> str:
    return name


class Repository:
    @sync_manager.with_session
    def create(self, session: Session, name: str) -> int:
        return len(name)

    @async_manager.with_session(propagation="nested")
    async def create_async(self, session: AsyncSession, name: str) -> str:
        return name


@sync_manager.with_session(read_only=True)
def count(session: Session) -> int:
    return 0


async def callers() -> None:
    repository = Repository()
    assert_type(repository.create("ada"), int)
    assert_type(await repository.create_async("ada"), str)
    assert_type(count(), int)
    assert_type(create("ada"), int)
    assert_type(create("ada", admin=True), int)
    assert_type(create_nested("ada"), str)
    assert_type(create_default(name="ada"), str)
    assert_type(await create_async("ada"), int)
    assert_type(await create_async_default("ada"), str)
    assert_type(sync_manager.session_scope(), SessionScope)
    assert_type(async_manager.session_scope(read_only=True), AsyncSessionScope)
    with sync_manager.session_scope() as session:
        assert_type(session, Session)
    async with async_manager.session_scope() as async_session:
        assert_type(async_session, AsyncSession)
