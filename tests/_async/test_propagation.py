"""Nested scopes: each propagation of the README's table, and rollback-only."""

from __future__ import annotations

import pytest

from sessionscope import (
    ConfigurationError,
    NoActiveSessionError,
    SessionConfig,
    TransactionRolledBackError,
)
from sessionscope._async import AsyncSessionManager
from tests.models import AuditRecord, User
from tests.support import Database


class Boom(Exception):
    pass


async def test_required_joins_and_commits_only_at_the_outermost_exit(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as outer:
        async with manager.session_scope() as inner:
            assert inner is outer
            inner.add(User(name="ada"))
        await outer.flush()
        assert database.count() == 0
    assert database.names() == ["ada"]


async def test_an_exception_through_a_joined_scope_rolls_back_everything(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(Boom):
        async with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            async with manager.session_scope() as inner:
                inner.add(User(name="bob"))
                raise Boom
    assert database.count() == 0


async def test_a_swallowed_exception_makes_the_transaction_rollback_only(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(TransactionRolledBackError) as raised:
        async with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            try:
                async with manager.session_scope():
                    raise Boom("swallowed")
            except Boom:
                pass
    assert isinstance(raised.value.__cause__, Boom)
    assert database.count() == 0


async def test_nested_rolls_back_to_its_savepoint_only(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(Boom):
            async with manager.session_scope(propagation="nested") as inner:
                assert inner is outer
                inner.add(User(name="bob"))
                await inner.flush()
                raise Boom
        outer.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


async def test_a_released_savepoint_rolls_back_with_its_transaction(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(Boom):
        async with manager.session_scope():
            async with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="bob"))
            raise Boom
    assert database.count() == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
async def test_a_thread_bound_sqlite_connection_still_gets_real_savepoints(
    database: Database, config: SessionConfig
) -> None:
    # check_same_thread=True: the BEGIN cannot go straight to sqlite3 from the
    # event loop's thread (aiosqlite), so SQLAlchemy's execution must send it.
    manager = AsyncSessionManager(
        database.url, config=config, connect_args={"check_same_thread": True}
    )
    try:
        with pytest.raises(Boom):
            async with manager.session_scope() as outer:
                outer.add(User(name="ada"))
                async with manager.session_scope(propagation="nested") as inner:
                    inner.add(User(name="bob"))
                raise Boom
        assert database.count() == 0
        async with manager.session_scope() as session:
            session.add(User(name="cid"))
        assert database.names() == ["cid"]
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await manager.dispose()


async def test_nested_savepoint_survives_a_failed_statement(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        await outer.flush()
        with pytest.raises(Exception, match=r"(?i)unique"):
            async with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="ada"))
                await inner.flush()
        outer.add(User(name="bob"))
    assert database.names() == ["ada", "bob"]


async def test_nested_without_an_active_scope_is_a_transaction(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope(propagation="nested") as session:
        session.add(User(name="ada"))
    assert database.names() == ["ada"]


async def test_rollback_only_inside_a_savepoint_stops_at_the_savepoint(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(TransactionRolledBackError):
            async with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="bob"))
                try:
                    async with manager.session_scope():
                        raise Boom
                except Boom:
                    pass
    assert database.names() == ["ada"]


async def test_requires_new_commits_on_its_own(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(Boom):
        async with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            async with manager.session_scope(propagation="requires_new") as audit:
                assert audit is not outer
                audit.add(AuditRecord(message="tried to add ada"))
            raise Boom
    assert database.count() == 0
    assert database.count(AuditRecord) == 1


async def test_requires_new_rolls_back_on_its_own(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(Boom):
            async with manager.session_scope(propagation="requires_new") as inner:
                inner.add(AuditRecord(message="lost"))
                raise Boom
    assert database.names() == ["ada"]
    assert database.count(AuditRecord) == 0


async def test_mandatory_needs_an_active_scope(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(NoActiveSessionError, match="mandatory"):
        async with manager.session_scope(propagation="mandatory"):
            pass
    async with manager.session_scope() as outer:
        async with manager.session_scope(propagation="mandatory") as inner:
            assert inner is outer
            inner.add(User(name="ada"))
    assert database.names() == ["ada"]


async def test_a_joined_scope_cannot_change_the_isolation_level(
    manager: AsyncSessionManager,
) -> None:
    async with manager.session_scope(isolation_level="SERIALIZABLE"):
        async with manager.session_scope(isolation_level="serializable"):
            pass  # the same level: fine
        with pytest.raises(ConfigurationError, match="READ UNCOMMITTED"):
            async with manager.session_scope(isolation_level="READ UNCOMMITTED"):
                pass
        with pytest.raises(ConfigurationError, match="isolation_level"):
            async with manager.session_scope(
                propagation="nested", isolation_level="READ UNCOMMITTED"
            ):
                pass


async def test_a_joined_scope_cannot_become_read_only(manager: AsyncSessionManager) -> None:
    async with manager.session_scope():
        with pytest.raises(ConfigurationError, match="read_only"):
            async with manager.session_scope(read_only=True):
                pass
    async with manager.session_scope(read_only=True):
        async with manager.session_scope(read_only=True):
            pass


async def test_scopes_of_other_managers_do_not_join(
    manager: AsyncSessionManager, database: Database
) -> None:
    other = AsyncSessionManager(database.url)
    try:
        async with manager.session_scope() as mine:
            async with other.session_scope() as theirs:
                assert theirs is not mine
    finally:
        await other.dispose()
