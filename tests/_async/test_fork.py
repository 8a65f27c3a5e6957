"""After os.fork(): a child never uses its parent's connections, nor joins its scopes.

The children are real processes, forked by multiprocessing's "fork" start method.
"""

from __future__ import annotations

import multiprocessing
import os
import traceback
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from sqlalchemy import text

from sessionscope import NoActiveSessionError, current_session
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import AsyncSession, sync_engine_of
from tests._async_compat import run_flavour
from tests.models import User
from tests.support import Database

# Python 3.12 warns about forking a process that has threads (aiosqlite's, the
# test server's log readers): the children here only touch the database.
pytestmark = pytest.mark.filterwarnings("ignore:.*fork.*:DeprecationWarning")


def _child_main(work: Callable[[], Awaitable[Any]]) -> None:
    try:
        run_flavour(work)
    except BaseException:
        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def in_a_forked_child(work: Callable[[], Awaitable[Any]]) -> None:
    child = multiprocessing.get_context("fork").Process(target=_child_main, args=(work,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, "the child failed (its traceback is in the captured stderr)"


async def connection_id(session: AsyncSession, database: Database) -> str:
    """Which server connection the session uses (PostgreSQL; SQLite has no server, and
    the pool's figures are what tell)."""
    if database.is_postgres:
        return str((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())
    return "the file"


async def test_a_forked_child_never_uses_its_parents_pooled_connection(
    manager: AsyncSessionManager, database: Database
) -> None:
    def pooled() -> int:
        return int(sync_engine_of(manager.engine).pool.checkedin())  # type: ignore[attr-defined]

    async with manager.session_scope() as session:
        parent = await connection_id(session, database)
    assert pooled() == 1

    async def child() -> None:
        assert pooled() == 0  # forgotten at the fork, not closed
        async with manager.session_scope() as session:
            session.add(User(name="child on %s" % await connection_id(session, database)))

    in_a_forked_child(child)
    names = database.names()
    assert len(names) == 1
    if database.is_postgres:
        assert names != ["child on %s" % parent]
    async with manager.session_scope() as session:  # the parent's connection still works
        assert await connection_id(session, database) == parent
        session.add(User(name="parent"))
    assert len(database.names()) == 2


async def test_a_child_forked_inside_a_scope_opens_its_own(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))

    async def child() -> None:
        try:
            current_session()
        except NoActiveSessionError:
            pass
        else:
            raise AssertionError("the child sees its parent's scope")
        await create_user("child")  # a scope of its own, committed on its own

    async with manager.session_scope() as session:
        # (Nothing read or written yet: on SQLite the child would wait for our lock.)
        in_a_forked_child(child)
        assert database.names() == ["child"]
        await session.execute(text("SELECT 1"))  # our connection was left alone
        session.add(User(name="parent"))
    assert database.names() == ["child", "parent"]
