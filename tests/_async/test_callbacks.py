"""on_commit / on_rollback: Django's semantics, savepoints included."""

from __future__ import annotations

import logging

import pytest

from sessionscope import NoActiveSessionError, on_commit, on_rollback
from sessionscope._async import AsyncSessionManager
from tests.models import User
from tests.support import Database


class Boom(Exception):
    pass


async def test_on_commit_runs_once_after_the_commit(
    manager: AsyncSessionManager, database: Database
) -> None:
    seen: list[int] = []
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        on_commit(lambda: seen.append(database.count()))
        assert seen == []
    assert seen == [1]  # the row was already committed when the callback ran


async def test_on_commit_is_dropped_and_on_rollback_runs_on_rollback(
    manager: AsyncSessionManager,
) -> None:
    seen: list[str] = []
    with pytest.raises(Boom):
        async with manager.session_scope():
            on_commit(lambda: seen.append("commit"))
            on_rollback(lambda: seen.append("rollback"))
            raise Boom
    assert seen == ["rollback"]


async def test_on_rollback_never_runs_on_commit(manager: AsyncSessionManager) -> None:
    seen: list[str] = []
    async with manager.session_scope():
        on_rollback(lambda: seen.append("rollback"))
    assert seen == []


async def test_a_rolled_back_savepoint_drops_its_on_commit_callbacks(
    manager: AsyncSessionManager,
) -> None:
    seen: list[str] = []
    async with manager.session_scope():
        on_commit(lambda: seen.append("outer commit"))
        with pytest.raises(Boom):
            async with manager.session_scope(propagation="nested"):
                on_commit(lambda: seen.append("inner commit"))
                on_rollback(lambda: seen.append("inner rollback"))
                raise Boom
        assert seen == ["inner rollback"]
    assert seen == ["inner rollback", "outer commit"]


async def test_a_released_savepoint_hands_its_callbacks_up(manager: AsyncSessionManager) -> None:
    seen: list[str] = []
    with pytest.raises(Boom):
        async with manager.session_scope():
            async with manager.session_scope(propagation="nested"):
                on_commit(lambda: seen.append("inner commit"))
                on_rollback(lambda: seen.append("inner rollback"))
            assert seen == []
            raise Boom
    assert seen == ["inner rollback"]
    seen.clear()
    async with manager.session_scope():
        async with manager.session_scope(propagation="nested"):
            on_commit(lambda: seen.append("inner commit"))
    assert seen == ["inner commit"]


async def test_callbacks_of_a_joined_scope_belong_to_the_transaction(
    manager: AsyncSessionManager,
) -> None:
    seen: list[str] = []
    async with manager.session_scope():
        async with manager.session_scope():
            on_commit(lambda: seen.append("joined"))
        assert seen == []
    assert seen == ["joined"]


async def test_coroutine_callbacks_are_awaited(manager: AsyncSessionManager) -> None:
    seen: list[str] = []

    async def committed() -> None:
        seen.append("committed")

    async def rolled_back() -> None:
        seen.append("rolled back")

    async with manager.session_scope():
        on_commit(committed)
    with pytest.raises(Boom):
        async with manager.session_scope():
            on_rollback(rolled_back)
            raise Boom
    assert seen == ["committed", "rolled back"]


async def test_a_failing_callback_is_logged_and_the_others_run(
    manager: AsyncSessionManager, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []

    def failing() -> None:
        raise Boom("callback failed")

    with caplog.at_level(logging.ERROR, logger="sessionscope"):
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            on_commit(failing)
            on_commit(lambda: seen.append("second"))
    assert seen == ["second"]
    assert database.names() == ["ada"]
    assert any("callback" in record.getMessage() for record in caplog.records)


async def test_callbacks_need_an_active_scope() -> None:
    with pytest.raises(NoActiveSessionError, match="on_commit"):
        on_commit(lambda: None)
    with pytest.raises(NoActiveSessionError, match="on_rollback"):
        on_rollback(lambda: None)


async def test_a_callback_must_be_callable(manager: AsyncSessionManager) -> None:
    async with manager.session_scope():
        with pytest.raises(TypeError, match="callable"):
            on_commit("not a function")  # type: ignore[arg-type]
