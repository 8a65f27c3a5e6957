# Generated from tests/_async/test_isolation.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""sessionscope.testing, tested on itself: whatever the code under test does inside
an isolation, nothing of it survives the isolation, and the managers work as
before afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sessionscope import (
    CommitOutcomeUnknownError,
    ConfigurationError,
    SessionConfig,
    SessionScopeError,
    on_commit,
)
from sessionscope._sync import SessionManager
from sessionscope._sync.isolation import isolated
from sessionscope._sync_compat import Session
from tests._sync_compat import finish, run_concurrently, start_in_copy
from tests.models import User
from tests.support import Database


class Boom(Exception):
    pass


def names_in(manager: SessionManager) -> list[str]:
    """What a scope of ``manager`` sees (inside an isolation: its uncommitted work)."""
    with manager.session_scope() as session:
        return sorted((session.scalars(select(User.name))).all())


def test_nothing_survives_whatever_the_code_under_test_did(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def helper(session: Session, name: str) -> None:
        session.add(User(name=name))

    with isolated(manager):
        with manager.session_scope() as session:
            session.add(User(name="committed"))
        helper("decorated")
        with manager.session_scope() as session:
            session.add(User(name="own commit"))
            session.commit()  # releases the savepoint; the scope goes on
            session.add(User(name="after own commit"))
        with manager.session_scope() as session:
            session.add(User(name="nested outer"))
            with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="nested inner"))
            with manager.session_scope(propagation="requires_new") as other:
                other.add(User(name="requires new"))
        with pytest.raises(Boom):
            with manager.session_scope() as session:
                session.add(User(name="raised"))
                raise Boom
        with manager.session_scope() as session:
            session.add(User(name="rolled back"))
            session.rollback()
        assert names_in(manager) == [
            "after own commit",
            "committed",
            "decorated",
            "nested inner",
            "nested outer",
            "own commit",
            "requires new",
        ]
        assert database.count() == 0  # nothing is committed for anyone else to see
    assert database.count() == 0
    with manager.session_scope() as session:  # as before, afterwards
        session.add(User(name="real"))
    assert database.names() == ["real"]


def test_data_from_before_the_isolation_is_visible(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as session:
        session.add(User(name="fixture"))
    with isolated(manager):
        assert names_in(manager) == ["fixture"]
        with manager.session_scope() as session:
            (session.scalars(select(User))).one().name = "renamed"
        assert names_in(manager) == ["renamed"]
    assert database.names() == ["fixture"]


def test_a_retry_rolls_back_to_the_savepoint_and_re_runs(
    manager: SessionManager, database: Database
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=2, retry_on=lambda error: isinstance(error, Boom))
    def flaky(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="attempt %d" % attempts))
        session.flush()
        if attempts == 1:
            raise Boom

    with isolated(manager):
        flaky()
        assert names_in(manager) == ["attempt 2"]
    assert attempts == 2
    assert database.count() == 0


def test_callbacks_run_when_the_savepoint_is_released(
    manager: SessionManager,
) -> None:
    seen: list[str] = []
    with isolated(manager):
        with manager.session_scope():
            on_commit(lambda: seen.append("committed"))
            assert seen == []
        assert seen == ["committed"]
        with pytest.raises(Boom):
            with manager.session_scope():
                on_commit(lambda: seen.append("never"))
                raise Boom
    assert seen == ["committed"]


def test_captured_callbacks_wait_for_the_test(manager: SessionManager) -> None:
    seen: list[str] = []
    with isolated(manager, on_commit="capture") as isolation:
        with manager.session_scope() as session:
            on_commit(lambda: seen.append("first"))
            session.commit()  # the body's own commit: captured too
            on_commit(lambda: seen.append("second"))
        assert seen == []
        assert len(isolation.on_commit_callbacks) == 2
        isolation.run_on_commit()
        assert seen == ["first", "second"]
        assert isolation.on_commit_callbacks == []


def test_isolations_nest(manager: SessionManager, database: Database) -> None:
    with isolated(manager):
        with manager.session_scope() as session:
            session.add(User(name="module data"))
        with isolated(manager):
            with manager.session_scope() as session:
                session.add(User(name="one test's data"))
            assert names_in(manager) == ["module data", "one test's data"]
        assert names_in(manager) == ["module data"]
    assert database.count() == 0


def test_concurrent_scopes_take_turns_on_the_one_connection(
    manager: SessionManager, database: Database
) -> None:
    def worker(n: int) -> None:
        with manager.session_scope() as session:
            session.add(User(name="worker %02d" % n))
            session.flush()
            count = session.scalar(select(func.count()).select_from(User))
            assert count is not None and count >= 1

    with isolated(manager):
        outcomes = run_concurrently(*[lambda n=n: worker(n) for n in range(50)])
        assert [o for o in outcomes if isinstance(o, BaseException)] == []
        assert len(names_in(manager)) == 50
    assert database.count() == 0


def test_bad_arguments_fail_at_once(manager: SessionManager) -> None:
    with pytest.raises(ConfigurationError, match="on_commit='later'"):
        isolated(manager, on_commit="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="takes"):
        isolated(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="at least one"):
        isolated()
    with pytest.raises(ConfigurationError, match="same manager twice"):
        isolated(manager, manager)
    isolation = isolated(manager)
    with isolation:
        with pytest.raises(SessionScopeError, match="entered once"):
            with isolation:
                pass


def test_an_isolation_level_is_refused_inside_an_isolation(
    manager: SessionManager,
) -> None:
    with isolated(manager):
        with pytest.raises(ConfigurationError, match="inside a test's isolation"):
            with manager.session_scope(isolation_level="SERIALIZABLE"):
                pass


@pytest.mark.parametrize("ending", ["exit", "own commit", "exception"])
def test_a_read_only_scope_inside_an_isolation_leaves_no_mode_behind(
    manager: SessionManager, database: Database, ending: str
) -> None:
    seen: list[str] = []
    with isolated(manager):
        with manager.session_scope() as session:
            session.add(User(name="before"))
        try:
            with manager.session_scope(read_only=True) as session:
                assert names_in(manager) == ["before"]  # joins: same transaction
                session.add(User(name="refused"))
                with pytest.raises(DBAPIError):
                    session.flush()
                session.rollback()
                on_commit(lambda: seen.append("read"))
                if ending == "own commit":
                    session.commit()
                    assert seen == ["read"]
                if ending == "exception":
                    raise Boom
        except Boom:
            pass
        with manager.session_scope() as session:  # writes work again
            session.add(User(name="after"))
        assert names_in(manager) == ["after", "before"]
    assert seen == ([] if ending == "exception" else ["read"])
    assert database.count() == 0


# -- injected faults: the real driver's error through the real classification ------------


SQLITE_FAULTS = ("serialization_failure", "deadlock")


def _inject_or_skip(isolation: Any, database: Database, fault: str, times: int) -> bool:
    """Inject ``fault``; False where the backend has no such fault (the connection
    faults on SQLite), after checking that inject() says so at once."""
    if database.is_postgres or fault in SQLITE_FAULTS:
        isolation.inject(fault, times=times)
        return True
    with pytest.raises(ConfigurationError, match="not available on SQLite"):
        isolation.inject(fault, times=times)
    return False


def _raised_by_the_driver(error: BaseException, database: Database, fault: str) -> bool:
    """The error is the driver's own, with the database's code for ``fault``."""
    assert isinstance(error, DBAPIError)
    orig = error.orig
    if database.is_postgres:
        codes = {"serialization_failure": "40001", "deadlock": "40P01"}
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return code == codes.get(fault, "08006")
    # SQLITE_BUSY (5), from a real lock conflict; the driver is sqlite3 or aiosqlite's.
    return type(orig).__module__ == "sqlite3" and orig.sqlite_errorcode & 0xFF == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", ["serialization_failure", "deadlock", "connection_lost"])
def test_an_injected_transient_fault_is_retried(
    manager: SessionManager, database: Database, fault: str
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=3)
    def transfer(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="attempt %d" % attempts))

    with isolated(manager) as isolation:
        if not _inject_or_skip(isolation, database, fault, times=2):
            return
        transfer()
        assert attempts == 3  # two failed commits, then the third landed
        assert names_in(manager) == ["attempt 3"]
        snapshot = manager.monitor.snapshot()
        expected = "connection" if fault == "connection_lost" else fault
        if not database.is_postgres:
            expected = "sqlite_busy"
        assert snapshot["retries"]["by_reason"].get(expected) == 2
    assert database.count() == 0


def test_an_injected_unknown_commit_outcome_is_not_re_run(
    manager: SessionManager, database: Database
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=3)
    def charge(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="charged"))

    @manager.with_session(retry_attempts=3, idempotent=True)
    def upsert(session: Session) -> None:
        session.add(User(name="upserted"))

    with isolated(manager) as isolation:
        if not _inject_or_skip(isolation, database, "commit_outcome_unknown", times=1):
            return
        with pytest.raises(CommitOutcomeUnknownError):
            charge()
        assert attempts == 1
        assert names_in(manager) == []  # rolled back, as if it had not landed
        isolation.inject("commit_outcome_unknown")
        upsert()  # declared idempotent: re-run
        assert names_in(manager) == ["upserted"]
    assert database.count() == 0


@pytest.mark.parametrize("fault", ["serialization_failure", "deadlock", "connection_lost"])
def test_an_injected_fault_fails_the_bodys_own_commit_and_its_work(
    manager: SessionManager, database: Database, fault: str
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=2)
    def two_steps(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="step 1, attempt %d" % attempts))
        session.commit()  # the first virtual COMMIT fails
        session.add(User(name="step 2, attempt %d" % attempts))

    with isolated(manager) as isolation:
        if not _inject_or_skip(isolation, database, fault, times=1):
            return
        with manager.session_scope() as session:
            session.add(User(name="lost"))
            with pytest.raises(DBAPIError) as raised:
                session.commit()
            assert _raised_by_the_driver(raised.value, database, fault)
            session.add(User(name="kept"))  # the session goes on, in a new savepoint
        assert names_in(manager) == ["kept"]
        isolation.inject(fault)
        two_steps()  # failed before it committed anything: re-run
        assert attempts == 2
        assert names_in(manager) == ["kept", "step 1, attempt 2", "step 2, attempt 2"]
    assert database.count() == 0


@pytest.mark.parametrize("fault", ["serialization_failure", "deadlock"])
def test_an_injected_fault_is_the_drivers_own_error(
    manager: SessionManager, database: Database, fault: str
) -> None:
    with isolated(manager) as isolation:
        isolation.inject(fault, times=3)
        for read_only in (False, True, False):
            with pytest.raises(DBAPIError) as raised:
                with manager.session_scope(read_only=read_only) as session:
                    session.scalar(select(func.count(User.id)))
            assert _raised_by_the_driver(raised.value, database, fault)
        with manager.session_scope() as session:  # the faults are used up
            session.add(User(name="landed"))
        assert names_in(manager) == ["landed"]
    assert database.count() == 0
    with manager.session_scope() as session:  # the pool's connections as before
        if not database.is_postgres:
            rows = (session.execute(text("PRAGMA database_list"))).all()
            assert [row[1] for row in rows] == ["main"]
        session.add(User(name="real"))
    assert database.names() == ["real"]


def test_a_callers_session_inside_its_requires_new_scope_fails_clearly(
    manager: SessionManager, database: Database
) -> None:
    # Independent transactions in production; savepoints of one connection here.
    with isolated(manager):
        with manager.session_scope() as session:
            session.add(User(name="caller"))
            session.flush()
            with pytest.raises(SessionScopeError, match="requires_new"):
                with manager.session_scope(propagation="requires_new") as other:
                    other.add(User(name="inner"))
                    other.flush()
                    session.commit()  # would release the inner savepoint too
        with pytest.raises(SessionScopeError, match="requires_new"):
            with manager.session_scope() as session:
                session.add(User(name="committed"))
                session.commit()  # no transaction left in this session
                with manager.session_scope(propagation="requires_new") as other:
                    other.add(User(name="inner 2"))
                    other.flush()
                    session.scalar(select(func.count(User.id)))  # begins above it
        with manager.session_scope() as session:
            with manager.session_scope(propagation="requires_new") as other:
                other.add(User(name="after"))  # before or after: fine
            session.add(User(name="caller again"))
        assert names_in(manager) == ["after", "caller", "caller again", "committed"]
    assert database.count() == 0


def test_bad_faults_fail_at_once(manager: SessionManager) -> None:
    with isolated(manager) as isolation:
        with pytest.raises(ConfigurationError, match="inject\\('oops'\\)"):
            isolation.inject("oops")
        with pytest.raises(ConfigurationError, match="times=0"):
            isolation.inject("deadlock", times=0)


def test_a_callback_of_the_bodys_commit_opens_a_scope_at_once(
    manager: SessionManager, database: Database
) -> None:
    # The committing scope still has the connection's turn; the callback runs where
    # production runs it, after the commit, and its scope uses that turn.
    def audit() -> None:
        with manager.session_scope() as session:
            session.add(User(name="audit"))

    with isolated(manager):
        with manager.session_scope() as session:
            session.add(User(name="work"))
            on_commit(audit)
            session.commit()
            assert names_in(manager) == ["audit", "work"]
    assert database.count() == 0


def test_an_isolation_inside_a_scope_of_its_manager_is_refused(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as session:
        session.add(User(name="real"))
        with pytest.raises(ConfigurationError, match="inside a scope of it"):
            with isolated(manager):
                pass
    assert database.names() == ["real"]
    assert manager._isolation is None


def test_a_scope_started_inside_another_waits_boundedly_and_says_why(
    database: Database, config: SessionConfig
) -> None:
    manager = SessionManager(database.url, config=config, pool_timeout=0.2)

    def worker() -> None:
        with manager.session_scope() as session:
            session.add(User(name="never"))

    try:
        with isolated(manager):
            with manager.session_scope():
                handle = start_in_copy(worker)
                with pytest.raises(PoolTimeoutError, match="connection of a test's isolation"):
                    finish(handle)
    finally:
        manager.dispose()
    assert database.count() == 0
