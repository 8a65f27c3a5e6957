"""The outermost scope: commit, rollback, close, and what a session is after its scope."""

from __future__ import annotations

import gc

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.exc import IntegrityError, InvalidRequestError

from sessionscope import (
    ConfigurationError,
    NoActiveSessionError,
    SessionScopeError,
    current_session,
)
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import sync_engine_of
from tests.models import User
from tests.support import Database, enable_sqlite_foreign_keys

# Also behind PgBouncer in transaction mode (tests/support.py configures the drivers).
THROUGH_PGBOUNCER = True


class Boom(Exception):
    pass


async def test_commits_on_success(manager: AsyncSessionManager, database: Database) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
    assert database.names() == ["ada"]


async def test_rolls_back_and_reraises_the_same_exception(
    manager: AsyncSessionManager, database: Database
) -> None:
    error = Boom("no")
    with pytest.raises(Boom) as raised:
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            await session.flush()
            raise error
    assert raised.value is error
    assert database.count() == 0


async def test_base_exception_rolls_back_too(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(KeyboardInterrupt):
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            await session.flush()
            raise KeyboardInterrupt
    assert database.count() == 0


async def test_objects_stay_readable_after_the_scope(manager: AsyncSessionManager) -> None:
    async with manager.session_scope() as session:
        user = User(name="ada")
        session.add(user)
    assert user.name == "ada"
    assert user.id is not None


async def test_a_session_cannot_be_used_after_its_scope(manager: AsyncSessionManager) -> None:
    async with manager.session_scope() as session:
        pass
    with pytest.raises(InvalidRequestError, match="closed"):
        await session.execute(select(1))


async def test_the_body_may_commit_itself(manager: AsyncSessionManager, database: Database) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        await session.commit()
        assert database.names() == ["ada"]
        session.add(User(name="bob"))
    assert database.names() == ["ada", "bob"]


async def test_a_failed_commit_rolls_back_and_raises(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
    with pytest.raises(Exception) as raised:
        async with manager.session_scope() as session:
            session.add(User(name="bob"))
            session.add(User(name="ada"))  # unique violation at flush, inside commit
    assert "unique" in str(raised.value).lower()
    assert database.names() == ["ada"]


async def test_a_commit_the_database_refuses_leaves_the_connection_clean(
    manager: AsyncSessionManager, database: Database
) -> None:
    # A deferred foreign key fails only at COMMIT. SQLite then keeps its
    # transaction (and write lock) open: the scope must still roll it back.
    if not database.is_postgres:
        event.listen(sync_engine_of(manager.engine), "connect", enable_sqlite_foreign_keys)
    with database.observer.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE refs (user_id INTEGER REFERENCES users (id) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    try:
        for _ in range(2):  # the same pooled connection, twice
            with pytest.raises(IntegrityError):
                async with manager.session_scope() as session:
                    await session.execute(text("INSERT INTO refs VALUES (42)"))
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
        assert database.names() == ["ada"]
        assert database.scalar("SELECT count(*) FROM refs") == 0
    finally:
        await manager.dispose()
        with database.observer.begin() as connection:
            connection.execute(text("DROP TABLE refs"))


async def test_auto_rollback_false_still_never_commits_an_error(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(ValueError):
        async with manager.session_scope(auto_rollback=False) as session:
            session.add(User(name="ada"))
            await session.flush()
            raise ValueError
    assert database.count() == 0


async def test_auto_commit_false_discards_what_the_body_did_not_commit(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope(auto_commit=False) as session:
        session.add(User(name="ada"))
    assert database.count() == 0
    async with manager.session_scope(auto_commit=False) as session:
        session.add(User(name="bob"))
        await session.commit()
    assert database.names() == ["bob"]


async def test_current_session_is_the_innermost(manager: AsyncSessionManager) -> None:
    with pytest.raises(NoActiveSessionError):
        current_session()
    async with manager.session_scope() as outer:
        assert current_session() is outer
        async with manager.session_scope(propagation="requires_new") as inner:
            assert current_session() is inner
        assert current_session() is outer
    with pytest.raises(NoActiveSessionError):
        current_session()


async def test_a_scope_object_is_used_once(manager: AsyncSessionManager) -> None:
    scope = manager.session_scope()
    async with scope:
        with pytest.raises(SessionScopeError, match="entered once"):
            async with scope:
                pass


async def test_read_only_refuses_writes_and_is_undone_after(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
    with pytest.raises(Exception) as raised:
        async with manager.session_scope(read_only=True) as session:
            assert (await session.execute(select(User.name))).scalars().all() == ["ada"]
            session.add(User(name="bob"))
            await session.flush()
    assert "read" in str(raised.value).lower()
    async with manager.session_scope(read_only=True) as session:
        await session.execute(select(User.name))
    # The same pooled connection takes writes again.
    async with manager.session_scope() as session:
        session.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


async def test_isolation_level_applies_to_its_transaction_only(
    manager: AsyncSessionManager, database: Database
) -> None:
    if database.is_postgres:
        query, chosen, expected = "SHOW transaction_isolation", "SERIALIZABLE", "serializable"
    else:
        query, chosen, expected = "PRAGMA read_uncommitted", "READ UNCOMMITTED", 1
    async with manager.session_scope(isolation_level=chosen) as session:
        assert (await session.execute(text(query))).scalar() == expected
        session.add(User(name="ada"))
    async with manager.session_scope() as session:
        assert (await session.execute(text(query))).scalar() != expected
    assert database.names() == ["ada"]


async def test_an_isolation_level_the_database_lacks_is_refused_early(
    manager: AsyncSessionManager, database: Database
) -> None:
    if database.is_postgres:
        async with manager.session_scope(isolation_level="REPEATABLE READ") as session:
            level = (await session.execute(text("SHOW transaction_isolation"))).scalar()
            assert level == "repeatable read"
    else:
        with pytest.raises(ConfigurationError, match="REPEATABLE READ"):
            manager.session_scope(isolation_level="REPEATABLE READ")


async def test_snapshot_counts_what_happened(manager: AsyncSessionManager) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        async with manager.session_scope(propagation="nested"):
            pass
    with pytest.raises(Boom):
        async with manager.session_scope():
            raise Boom
    snapshot = manager.monitor.snapshot()
    assert snapshot["sessions"] == {"opened": 2, "closed": 2, "active": 0}
    assert snapshot["transactions"]["committed"] == snapshot["transactions"]["rolled_back"] == 1
    assert snapshot["savepoints"]["opened"] == snapshot["savepoints"]["released"] == 1
    assert snapshot["errors"] == {"Boom": 1}
    assert snapshot["pool"]["checked_out"] == 0
    assert snapshot["transaction_duration"]["count"] == 2


async def test_a_scope_leaves_no_reference_cycles_behind(manager: AsyncSessionManager) -> None:
    # Garbage in cycles waits for the cyclic collector, whose runs every scope
    # would then pay for: the hot path must free everything by reference counting.
    async def one() -> None:
        async with manager.session_scope() as session:
            await session.execute(text("SELECT 1"))

    for _ in range(20):
        await one()
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            await one()
        assert gc.collect() == 0
    finally:
        gc.enable()
