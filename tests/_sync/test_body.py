# Generated from tests/_async/test_body.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""What the body may do to its transaction, and what it may not (the README's
"What the body may do"): ownership, Rollback, options and callbacks that
follow the body's own commit, copies of a scope's context, single-connection pools.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sessionscope import (
    ConfigurationError,
    NoActiveSessionError,
    Rollback,
    SessionConfig,
    TransactionOwnershipError,
    TransactionRolledBackError,
    current_session,
    on_commit,
    on_rollback,
)
from sessionscope._sync import SessionManager
from sessionscope._sync_compat import IS_ASYNC, Session, sleep
from tests._sync_compat import (
    Event,
    create_tables,
    finish,
    run_concurrently,
    run_in,
    start_in_copy,
    wait_for_event,
)
from tests.models import User
from tests.support import Database

MEMORY_URL = ("sqlite+aiosqlite" if IS_ASYNC else "sqlite") + "://"


class Boom(Exception):
    pass


# -- only the owner of a transaction ends it -------------------------------------------


def test_a_decorated_helper_cannot_commit_its_callers_work(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def helper(session: Session) -> None:
        session.add(User(name="helper"))
        session.commit()

    with pytest.raises(TransactionOwnershipError) as raised:
        with manager.session_scope() as session:
            session.add(User(name="caller"))
            helper()
            raise Boom  # not reached: the helper's commit was refused
    assert database.count() == 0
    assert "session.commit() in a scope that joined the transaction" in str(raised.value)
    # Where the owner was opened: its function and file (and the line it is running).
    owner = "test_a_decorated_helper_cannot_commit_its_callers_work at %s:" % __file__
    assert owner in str(raised.value)


@pytest.mark.parametrize("how", ["rollback", "close"])
def test_a_joined_scope_cannot_throw_away_its_callers_work(
    manager: SessionManager, database: Database, how: str
) -> None:
    @manager.with_session
    def helper(session: Session) -> None:
        getattr(session, how)()

    with pytest.raises(TransactionRolledBackError):
        with manager.session_scope() as session:
            session.add(User(name="ada"))
            session.flush()
            with pytest.raises(TransactionOwnershipError, match="session.%s()" % how):
                helper()
            session.add(User(name="bob"))  # the caller goes on as if all were well
    assert database.count() == 0


def test_a_nested_scope_cannot_commit_the_transaction(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(TransactionOwnershipError, match="nested scope"):
            with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="bob"))
                inner.commit()
        assert database.count() == 0  # the savepoint was rolled back, nothing committed
        outer.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


@pytest.mark.parametrize("propagation", ["required", "nested"])
def test_the_body_cannot_commit_around_the_session(
    manager: SessionManager, database: Database, propagation: str
) -> None:
    # SQLAlchemy's other way to commit: the transaction object itself.
    with pytest.raises(TransactionOwnershipError):
        with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            with manager.session_scope(propagation=propagation) as inner:  # type: ignore[call-overload]
                transaction = inner.get_transaction()
                assert transaction is not None
                transaction.commit()
    assert database.names() == []


def test_a_joined_scope_cannot_commit_with_session_begin(
    manager: SessionManager, database: Database
) -> None:
    # After the owner's own commit no transaction is open, and session.begin() would
    # open one that its block commits: in a joined helper, that is refused too.
    @manager.with_session
    def helper(session: Session) -> None:
        with session.begin():
            session.add(User(name="helper"))

    with pytest.raises(TransactionOwnershipError):
        with manager.session_scope() as session:
            session.add(User(name="step 1"))
            session.commit()
            helper()
    assert database.names() == ["step 1"]


def test_a_rollback_around_the_session_fails_its_owner(
    manager: SessionManager, database: Database
) -> None:
    # Nothing can undo it: the owner must not then commit as if all were well.
    with pytest.raises(TransactionRolledBackError) as raised:
        with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            with manager.session_scope() as joined:
                transaction = joined.get_transaction()
                assert transaction is not None
                transaction.rollback()
            outer.add(User(name="bob"))
    assert isinstance(raised.value.__cause__, TransactionOwnershipError)
    assert database.names() == []


def test_a_foreign_session_passed_in_is_left_alone(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def create_user(session: Session, name: str) -> None:
        session.add(User(name=name))
        session.commit()  # the caller's session, the caller's business

    with Session(manager.engine) as foreign:
        create_user(foreign, "ada")
    assert database.names() == ["ada"]


# -- the owner's body ------------------------------------------------------------------


def test_the_owner_may_end_its_transaction_and_go_on(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
        session.commit()
        session.add(User(name="lost"))
        session.flush()
        session.rollback()
        session.add(User(name="closed"))
        session.flush()
        session.close()  # like a rollback; the session stays usable
        session.add(User(name="bob"))
    assert database.names() == ["ada", "bob"]


@pytest.mark.parametrize("how", ["commit", "rollback", "close"])
def test_read_only_covers_every_transaction_of_the_scope(
    manager: SessionManager, database: Database, how: str
) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
    with pytest.raises(DBAPIError):
        with manager.session_scope(read_only=True) as session:
            session.execute(select(User))
            getattr(session, how)()
            session.add(User(name="bob"))
            session.flush()
    assert database.names() == ["ada"]


def test_the_isolation_level_covers_every_transaction_of_the_scope(
    manager: SessionManager, database: Database
) -> None:
    if database.is_postgres:
        level, query, chosen, default = (
            "SERIALIZABLE",
            "SHOW transaction_isolation",
            "serializable",
            "read committed",
        )
    else:
        level, query, chosen, default = ("READ UNCOMMITTED", "PRAGMA read_uncommitted", 1, 0)
    with manager.session_scope(isolation_level=level) as session:
        assert (session.execute(text(query))).scalar() == chosen
        for how in ("commit", "rollback", "close"):
            getattr(session, how)()
            assert (session.execute(text(query))).scalar() == chosen, how
    with manager.session_scope() as session:  # the pool's connections are as before
        assert (session.execute(text(query))).scalar() == default


def test_no_connection_goes_back_to_the_pool_read_only(
    database: Database, config: SessionConfig
) -> None:
    # One connection: whatever a read-only scope's body did to it, the next scope gets it.
    manager = SessionManager(database.url, config=config, pool_size=1, max_overflow=0)
    try:
        for how in ("close", "commit", "rollback"):
            with manager.session_scope(read_only=True) as session:
                session.execute(select(User))
                getattr(session, how)()
            with manager.session_scope() as session:
                session.add(User(name=how))
        assert database.names() == ["close", "commit", "rollback"]
    finally:
        manager.dispose()


def test_the_body_cannot_commit_a_transaction_marked_rollback_only(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as session:
        session.add(User(name="ada"))
        try:
            with manager.session_scope():
                raise Boom
        except Boom:
            pass
        with pytest.raises(TransactionRolledBackError):
            session.commit()
        session.add(User(name="bob"))  # a new transaction, with nothing to hide
    assert database.names() == ["bob"]


# -- callbacks follow the work they were registered with --------------------------------


def test_callbacks_follow_the_bodys_own_commit(manager: SessionManager, database: Database) -> None:
    seen: list[str] = []
    with pytest.raises(Boom):
        with manager.session_scope() as session:
            session.add(User(name="ada"))
            on_commit(lambda: seen.append("commit 1"))
            on_rollback(lambda: seen.append("rollback 1"))
            session.commit()
            assert seen == ["commit 1"]
            on_commit(lambda: seen.append("commit 2"))
            on_rollback(lambda: seen.append("rollback 2"))
            raise Boom
    assert seen == ["commit 1", "rollback 2"]
    assert database.names() == ["ada"]


def test_a_callback_of_the_bodys_commit_runs_outside_the_scope(
    manager: SessionManager, database: Database
) -> None:
    # As at the scope's exit: a scope the callback opens has a transaction of its
    # own, not the next transaction of the scope that committed.
    sessions: list[Session] = []

    def audit() -> None:
        with manager.session_scope() as other:
            sessions.append(other)
            other.add(User(name="audit"))

    with pytest.raises(Boom):
        with manager.session_scope() as session:
            session.add(User(name="ada"))
            on_commit(audit)
            session.commit()
            assert current_session() is session
            session.add(User(name="lost"))
            raise Boom
    assert sessions and sessions[0] is not session
    assert database.names() == ["ada", "audit"]


@pytest.mark.parametrize("how", ["rollback", "close"])
def test_callbacks_follow_the_bodys_own_rollback(
    manager: SessionManager, database: Database, how: str
) -> None:
    seen: list[str] = []
    with manager.session_scope() as session:
        session.add(User(name="lost"))
        on_commit(lambda: seen.append("commit 1"))
        on_rollback(lambda: seen.append("rollback 1"))
        getattr(session, how)()
        assert seen == ["rollback 1"]
        session.add(User(name="bob"))
        on_commit(lambda: seen.append("commit 2"))
    assert seen == ["rollback 1", "commit 2"]
    assert database.names() == ["bob"]


class Flaky(Exception):
    pass


def test_a_function_that_committed_part_of_its_work_is_not_re_run(
    manager: SessionManager, database: Database
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=2, retry_on=lambda error: isinstance(error, Flaky))
    def transfer(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="step 1"))
        session.commit()
        raise Flaky("after the body's own commit")

    with pytest.raises(Flaky) as raised:
        transfer()
    assert attempts == 1  # a re-run would have committed step 1 again
    assert "committed part of its work itself" in "\n".join(raised.value.__notes__)
    assert database.names() == ["step 1"]


# -- sessionscope.Rollback -------------------------------------------------------------


def test_rollback_leaving_the_owner_is_a_quiet_rollback(
    manager: SessionManager, database: Database
) -> None:
    seen: list[str] = []
    with manager.session_scope() as session:
        session.add(User(name="ada"))
        on_rollback(lambda: seen.append("rollback"))
        raise Rollback
    assert database.count() == 0
    assert seen == ["rollback"]


def test_rollback_leaving_a_joined_scope_goes_up_to_the_owner(
    manager: SessionManager, database: Database
) -> None:
    reached: list[str] = []
    with manager.session_scope() as session:
        session.add(User(name="ada"))
        with manager.session_scope():
            raise Rollback
        reached.append("the caller's body goes on")  # it does not: the owner swallows it
    assert reached == []
    assert database.count() == 0


def test_rollback_swallowed_on_its_way_up_still_rolls_back_loudly(
    manager: SessionManager, database: Database
) -> None:
    with pytest.raises(TransactionRolledBackError):
        with manager.session_scope() as session:
            session.add(User(name="ada"))
            try:
                with manager.session_scope():
                    raise Rollback
            except Rollback:
                pass
    assert database.count() == 0


def test_rollback_in_a_nested_scope_rolls_back_its_savepoint_only(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with manager.session_scope(propagation="nested") as inner:
            inner.add(User(name="bob"))
            inner.flush()
            raise Rollback
        outer.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


def test_a_decorated_function_that_raises_rollback_returns_none(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def create_user(session: Session, name: str) -> str:
        session.add(User(name=name))
        if name == "bad":
            raise Rollback
        return name

    assert create_user("ada") == "ada"
    assert create_user("bad") is None
    assert database.names() == ["ada"]


# -- copies of a scope's context never join it ---------------------------------------


def test_code_started_in_a_scope_that_runs_after_it_opens_its_own(
    manager: SessionManager, database: Database
) -> None:
    ended = Event()

    @manager.with_session
    def create_user(session: Session, name: str) -> Session:
        session.add(User(name=name))
        return session

    def later() -> Session:
        wait_for_event(ended)
        return create_user("later")

    with manager.session_scope() as outer:
        started = start_in_copy(later)
    ended.set()
    assert finish(started) is not outer
    assert database.names() == ["later"]


def test_a_copy_of_an_ended_scopes_context_sees_no_scope(
    manager: SessionManager,
) -> None:
    def current() -> Any:
        try:
            return current_session()
        except NoActiveSessionError:
            return None

    with manager.session_scope():
        context = contextvars.copy_context()
    assert run_in(context, current) is None


def test_copies_of_a_scopes_context_never_share_its_session(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def create_user(session: Session, name: str) -> Session:
        session.add(User(name=name))
        session.flush()
        sleep(0.05)  # all three at once
        return session

    with manager.session_scope() as outer:
        started = [start_in_copy(lambda n=n: create_user("worker %d" % n)) for n in range(3)]
        sessions = [finish(handle) for handle in started]
    assert outer not in sessions
    assert len({id(session) for session in sessions}) == 3
    assert database.names() == ["worker 0", "worker 1", "worker 2"]


# -- pools that give every session the same connection (in-memory SQLite) -----------


@pytest.fixture
def memory_manager(config: SessionConfig) -> Iterator[SessionManager]:
    manager = SessionManager(MEMORY_URL, config=config)
    create_tables(manager.engine)
    yield manager
    manager.dispose()


def _count_in(manager: SessionManager) -> int:
    with manager.session_scope() as session:
        return int((session.execute(select(func.count()).select_from(User))).scalar_one())


def test_in_memory_requires_new_inside_a_scope_is_refused(
    memory_manager: SessionManager,
) -> None:
    with pytest.raises(Boom):
        with memory_manager.session_scope() as outer:
            outer.add(User(name="ada"))
            with pytest.raises(ConfigurationError, match=r"requires_new.*in-memory"):
                with memory_manager.session_scope(propagation="requires_new") as audit:
                    audit.add(User(name="audit"))
            raise Boom
    assert _count_in(memory_manager) == 0
    with memory_manager.session_scope(propagation="requires_new") as alone:
        alone.add(User(name="alone"))  # with nothing around it, it is a scope like any other
    assert _count_in(memory_manager) == 1


def test_in_memory_concurrent_scopes_take_turns(
    memory_manager: SessionManager,
) -> None:
    def worker(n: int) -> None:
        with memory_manager.session_scope() as session:
            session.add(User(name="worker %d" % n))
            session.flush()
            sleep(0.001)

    outcomes = run_concurrently(*[lambda n=n: worker(n) for n in range(20)])
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert _count_in(memory_manager) == 20


def test_in_memory_a_scope_started_inside_another_waits_boundedly(
    config: SessionConfig,
) -> None:
    # Code started inside a scope opens its own, which waits for the only connection:
    # held by the scope it was started in, until that scope exits. The wait ends.
    manager = SessionManager(MEMORY_URL, config=config, pool_timeout=0.2)
    create_tables(manager.engine)

    def worker() -> None:
        with manager.session_scope() as session:
            session.add(User(name="never"))

    try:
        with manager.session_scope():
            handle = start_in_copy(worker)
            with pytest.raises(PoolTimeoutError, match="only connection of an in-memory"):
                finish(handle)
        assert _count_in(manager) == 0
    finally:
        manager.dispose()
