# Generated from tests/_async/test_scope.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
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
from sessionscope._sync import SessionManager
from sessionscope._sync_compat import sync_engine_of
from tests.models import User
from tests.support import Database, enable_sqlite_foreign_keys

# Also behind PgBouncer in transaction mode (tests/support.py configures the drivers).
THROUGH_PGBOUNCER = True


class Boom(Exception):
    pass


def test_commits_on_success(manager: SessionManager, database: Database) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
    assert database.names() == ["ada"]


def test_rolls_back_and_reraises_the_same_exception(
    manager: SessionManager, database: Database
) -> None:
    error = Boom("no")
    with pytest.raises(Boom) as raised:
        with manager.session_scope() as session:
            session.add(User(name="ada"))
            session.flush()
            raise error
    assert raised.value is error
    assert database.count() == 0


def test_base_exception_rolls_back_too(manager: SessionManager, database: Database) -> None:
    with pytest.raises(KeyboardInterrupt):
        with manager.session_scope() as session:
            session.add(User(name="ada"))
            session.flush()
            raise KeyboardInterrupt
    assert database.count() == 0


def test_objects_stay_readable_after_the_scope(manager: SessionManager) -> None:
    with manager.session_scope() as session:
        user = User(name="ada")
        session.add(user)
    assert user.name == "ada"
    assert user.id is not None


def test_a_session_cannot_be_used_after_its_scope(manager: SessionManager) -> None:
    with manager.session_scope() as session:
        pass
    with pytest.raises(InvalidRequestError, match="closed"):
        session.execute(select(1))


def test_the_body_may_commit_itself(manager: SessionManager, database: Database) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
        session.commit()
        assert database.names() == ["ada"]
        session.add(User(name="bob"))
    assert database.names() == ["ada", "bob"]


def test_a_failed_commit_rolls_back_and_raises(manager: SessionManager, database: Database) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
    with pytest.raises(Exception) as raised:
        with manager.session_scope() as session:
            session.add(User(name="bob"))
            session.add(User(name="ada"))  # unique violation at flush, inside commit
    assert "unique" in str(raised.value).lower()
    assert database.names() == ["ada"]


def test_a_commit_the_database_refuses_leaves_the_connection_clean(
    manager: SessionManager, database: Database
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
                with manager.session_scope() as session:
                    session.execute(text("INSERT INTO refs VALUES (42)"))
        with manager.session_scope() as session:
            session.add(User(name="ada"))
        assert database.names() == ["ada"]
        assert database.scalar("SELECT count(*) FROM refs") == 0
    finally:
        manager.dispose()
        with database.observer.begin() as connection:
            connection.execute(text("DROP TABLE refs"))


def test_auto_rollback_false_still_never_commits_an_error(
    manager: SessionManager, database: Database
) -> None:
    with pytest.raises(ValueError):
        with manager.session_scope(auto_rollback=False) as session:
            session.add(User(name="ada"))
            session.flush()
            raise ValueError
    assert database.count() == 0


def test_auto_commit_false_discards_what_the_body_did_not_commit(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope(auto_commit=False) as session:
        session.add(User(name="ada"))
    assert database.count() == 0
    with manager.session_scope(auto_commit=False) as session:
        session.add(User(name="bob"))
        session.commit()
    assert database.names() == ["bob"]


def test_current_session_is_the_innermost(manager: SessionManager) -> None:
    with pytest.raises(NoActiveSessionError):
        current_session()
    with manager.session_scope() as outer:
        assert current_session() is outer
        with manager.session_scope(propagation="requires_new") as inner:
            assert current_session() is inner
        assert current_session() is outer
    with pytest.raises(NoActiveSessionError):
        current_session()


def test_a_scope_object_is_used_once(manager: SessionManager) -> None:
    scope = manager.session_scope()
    with scope:
        with pytest.raises(SessionScopeError, match="entered once"):
            with scope:
                pass


def test_read_only_refuses_writes_and_is_undone_after(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
    with pytest.raises(Exception) as raised:
        with manager.session_scope(read_only=True) as session:
            assert (session.execute(select(User.name))).scalars().all() == ["ada"]
            session.add(User(name="bob"))
            session.flush()
    assert "read" in str(raised.value).lower()
    with manager.session_scope(read_only=True) as session:
        session.execute(select(User.name))
    # The same pooled connection takes writes again.
    with manager.session_scope() as session:
        session.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


def test_isolation_level_applies_to_its_transaction_only(
    manager: SessionManager, database: Database
) -> None:
    if database.is_postgres:
        query, chosen, expected = "SHOW transaction_isolation", "SERIALIZABLE", "serializable"
    else:
        query, chosen, expected = "PRAGMA read_uncommitted", "READ UNCOMMITTED", 1
    with manager.session_scope(isolation_level=chosen) as session:
        assert (session.execute(text(query))).scalar() == expected
        session.add(User(name="ada"))
    with manager.session_scope() as session:
        assert (session.execute(text(query))).scalar() != expected
    assert database.names() == ["ada"]


def test_an_isolation_level_the_database_lacks_is_refused_early(
    manager: SessionManager, database: Database
) -> None:
    if database.is_postgres:
        with manager.session_scope(isolation_level="REPEATABLE READ") as session:
            level = (session.execute(text("SHOW transaction_isolation"))).scalar()
            assert level == "repeatable read"
    else:
        with pytest.raises(ConfigurationError, match="REPEATABLE READ"):
            manager.session_scope(isolation_level="REPEATABLE READ")


def test_snapshot_counts_what_happened(manager: SessionManager) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
        with manager.session_scope(propagation="nested"):
            pass
    with pytest.raises(Boom):
        with manager.session_scope():
            raise Boom
    snapshot = manager.monitor.snapshot()
    assert snapshot["sessions"] == {"opened": 2, "closed": 2, "active": 0}
    assert snapshot["transactions"]["committed"] == snapshot["transactions"]["rolled_back"] == 1
    assert snapshot["savepoints"]["opened"] == snapshot["savepoints"]["released"] == 1
    assert snapshot["errors"] == {"Boom": 1}
    assert snapshot["pool"]["checked_out"] == 0
    assert snapshot["transaction_duration"]["count"] == 2


def test_a_scope_leaves_no_reference_cycles_behind(manager: SessionManager) -> None:
    # Garbage in cycles waits for the cyclic collector, whose runs every scope
    # would then pay for: the hot path must free everything by reference counting.
    def one() -> None:
        with manager.session_scope() as session:
            session.execute(text("SELECT 1"))

    for _ in range(20):
        one()
    gc.collect()
    gc.disable()
    try:
        for _ in range(50):
            one()
        assert gc.collect() == 0
    finally:
        gc.enable()
