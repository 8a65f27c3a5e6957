"""Module-level functions on the default manager, and the original request's examples."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sessionscope import ConfigurationError, set_default_manager
from sessionscope._async import AsyncSessionManager, async_session_scope, async_with_session
from sessionscope._async_compat import AsyncSession
from tests.models import User
from tests.support import Database


# Decorated at import time, before any manager exists, as application modules are.
@async_with_session
async def create_user(session: AsyncSession, name: str) -> User:
    user = User(name=name)
    session.add(user)
    return user


@async_with_session(propagation="nested")
async def create_user_in_savepoint(session: AsyncSession, name: str) -> None:
    session.add(User(name=name))


async def test_the_original_examples_run_as_written(
    manager: AsyncSessionManager, database: Database
) -> None:
    set_default_manager(manager)

    user = await create_user(name="ada")
    assert user.name == "ada"

    async with async_session_scope() as session:
        result = await session.execute(select(User))
        await session.commit()
        assert [u.name for u in result.scalars()] == ["ada"]
    assert database.names() == ["ada"]


async def test_module_level_functions_take_options(
    manager: AsyncSessionManager, database: Database
) -> None:
    set_default_manager(manager)
    async with async_session_scope() as outer:
        await create_user_in_savepoint("ada")
        async with async_session_scope(propagation="requires_new") as inner:
            assert inner is not outer
    assert database.names() == ["ada"]


async def test_without_a_default_manager_the_error_says_what_to_call() -> None:
    with pytest.raises(ConfigurationError, match="set_default_manager"):
        async_session_scope()
    with pytest.raises(ConfigurationError, match="set_default_manager"):
        await create_user(name="ada")


async def test_set_default_manager_refuses_anything_else() -> None:
    with pytest.raises(ConfigurationError, match="42"):
        set_default_manager(42)
