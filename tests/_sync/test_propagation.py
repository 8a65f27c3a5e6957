# Generated from tests/_async/test_propagation.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""Nested scopes: each propagation of the README's table, and rollback-only."""

from __future__ import annotations

import pytest

from sessionscope import (
    ConfigurationError,
    NoActiveSessionError,
    SessionConfig,
    TransactionRolledBackError,
)
from sessionscope._sync import SessionManager
from tests.models import AuditRecord, User
from tests.support import Database


class Boom(Exception):
    pass


def test_required_joins_and_commits_only_at_the_outermost_exit(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as outer:
        with manager.session_scope() as inner:
            assert inner is outer
            inner.add(User(name="ada"))
        outer.flush()
        assert database.count() == 0
    assert database.names() == ["ada"]


def test_an_exception_through_a_joined_scope_rolls_back_everything(
    manager: SessionManager, database: Database
) -> None:
    with pytest.raises(Boom):
        with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            with manager.session_scope() as inner:
                inner.add(User(name="bob"))
                raise Boom
    assert database.count() == 0


def test_a_swallowed_exception_makes_the_transaction_rollback_only(
    manager: SessionManager, database: Database
) -> None:
    with pytest.raises(TransactionRolledBackError) as raised:
        with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            try:
                with manager.session_scope():
                    raise Boom("swallowed")
            except Boom:
                pass
    assert isinstance(raised.value.__cause__, Boom)
    assert database.count() == 0


def test_nested_rolls_back_to_its_savepoint_only(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(Boom):
            with manager.session_scope(propagation="nested") as inner:
                assert inner is outer
                inner.add(User(name="bob"))
                inner.flush()
                raise Boom
        outer.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


def test_a_released_savepoint_rolls_back_with_its_transaction(
    manager: SessionManager, database: Database
) -> None:
    with pytest.raises(Boom):
        with manager.session_scope():
            with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="bob"))
            raise Boom
    assert database.count() == 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_a_thread_bound_sqlite_connection_still_gets_real_savepoints(
    database: Database, config: SessionConfig
) -> None:
    # check_same_thread=True: the BEGIN cannot go straight to sqlite3 from the
    # event loop's thread (aiosqlite), so SQLAlchemy's execution must send it.
    manager = SessionManager(database.url, config=config, connect_args={"check_same_thread": True})
    try:
        with pytest.raises(Boom):
            with manager.session_scope() as outer:
                outer.add(User(name="ada"))
                with manager.session_scope(propagation="nested") as inner:
                    inner.add(User(name="bob"))
                raise Boom
        assert database.count() == 0
        with manager.session_scope() as session:
            session.add(User(name="cid"))
        assert database.names() == ["cid"]
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        manager.dispose()


def test_nested_savepoint_survives_a_failed_statement(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        outer.flush()
        with pytest.raises(Exception, match=r"(?i)unique"):
            with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="ada"))
                inner.flush()
        outer.add(User(name="bob"))
    assert database.names() == ["ada", "bob"]


def test_nested_without_an_active_scope_is_a_transaction(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope(propagation="nested") as session:
        session.add(User(name="ada"))
    assert database.names() == ["ada"]


def test_rollback_only_inside_a_savepoint_stops_at_the_savepoint(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(TransactionRolledBackError):
            with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="bob"))
                try:
                    with manager.session_scope():
                        raise Boom
                except Boom:
                    pass
    assert database.names() == ["ada"]


def test_requires_new_commits_on_its_own(manager: SessionManager, database: Database) -> None:
    with pytest.raises(Boom):
        with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            with manager.session_scope(propagation="requires_new") as audit:
                assert audit is not outer
                audit.add(AuditRecord(message="tried to add ada"))
            raise Boom
    assert database.count() == 0
    assert database.count(AuditRecord) == 1


def test_requires_new_rolls_back_on_its_own(manager: SessionManager, database: Database) -> None:
    with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(Boom):
            with manager.session_scope(propagation="requires_new") as inner:
                inner.add(AuditRecord(message="lost"))
                raise Boom
    assert database.names() == ["ada"]
    assert database.count(AuditRecord) == 0


def test_mandatory_needs_an_active_scope(manager: SessionManager, database: Database) -> None:
    with pytest.raises(NoActiveSessionError, match="mandatory"):
        with manager.session_scope(propagation="mandatory"):
            pass
    with manager.session_scope() as outer:
        with manager.session_scope(propagation="mandatory") as inner:
            assert inner is outer
            inner.add(User(name="ada"))
    assert database.names() == ["ada"]


def test_a_joined_scope_cannot_change_the_isolation_level(
    manager: SessionManager,
) -> None:
    with manager.session_scope(isolation_level="SERIALIZABLE"):
        with manager.session_scope(isolation_level="serializable"):
            pass  # the same level: fine
        with pytest.raises(ConfigurationError, match="READ UNCOMMITTED"):
            with manager.session_scope(isolation_level="READ UNCOMMITTED"):
                pass
        with pytest.raises(ConfigurationError, match="isolation_level"):
            with manager.session_scope(propagation="nested", isolation_level="READ UNCOMMITTED"):
                pass


def test_a_joined_scope_cannot_become_read_only(manager: SessionManager) -> None:
    with manager.session_scope():
        with pytest.raises(ConfigurationError, match="read_only"):
            with manager.session_scope(read_only=True):
                pass
    with manager.session_scope(read_only=True):
        with manager.session_scope(read_only=True):
            pass


def test_scopes_of_other_managers_do_not_join(manager: SessionManager, database: Database) -> None:
    other = SessionManager(database.url)
    try:
        with manager.session_scope() as mine:
            with other.session_scope() as theirs:
                assert theirs is not mine
    finally:
        other.dispose()
