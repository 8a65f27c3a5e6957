# Generated from tests/_async/test_settings.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""Transaction settings, timeouts and deadlines (README "Settings and deadlines"):
what every transaction of a scope starts with, and that none of it outlives the
scope on its connection."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, select, text, update
from sqlalchemy.exc import DBAPIError

from sessionscope import (
    ConfigurationError,
    DeadlineExceededError,
    SessionConfig,
    SessionScopeError,
)
from sessionscope._sync import SessionManager
from sessionscope._sync.isolation import isolated
from sessionscope._sync_compat import Session, sync_engine_of
from sessionscope._transient import timeout_reason
from tests._sync_compat import sleep
from tests.models import User
from tests.support import Database

# A statement that runs for seconds on each backend: long enough for any timeout here.
# Also behind PgBouncer in transaction mode: settings are set_config(..., true) only.
THROUGH_PGBOUNCER = True

SLOW = {
    "postgresql": "SELECT pg_sleep(5)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM (SELECT x FROM c LIMIT 300000000) AS t",
}
TENANT = "SELECT current_setting('app.tenant_id', true)"


class Boom(Exception):
    pass


def slow(manager: SessionManager) -> Any:
    return text(SLOW[manager.engine.dialect.name])


@contextmanager
def statements_of(manager: SessionManager) -> Iterator[list[str]]:
    """The statements the manager's connections send, as they are sent."""
    sent: list[str] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        sent.append(statement)

    engine = sync_engine_of(manager.engine)
    event.listen(engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        event.remove(engine, "before_cursor_execute", record)


def has_settings(manager: SessionManager, database: Database) -> bool:
    """PostgreSQL has settings of a transaction; SQLite refuses them, at once."""
    if database.is_postgres:
        return True
    with pytest.raises(ConfigurationError, match=r"settings="):
        manager.session_scope(settings={"app.tenant_id": 1})
    return False


# -- bad values fail where they are given ------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"settings": {"bad name": 1}}, "'bad name'"),
        ({"settings": {"1st": 1}}, "'1st'"),
        ({"settings": {"app.x": object()}}, "settings\\['app.x'\\]"),
        ({"settings": ["app.x"]}, "\\['app.x'\\]"),
        ({"statement_timeout": -1}, "statement_timeout.*-1"),
        ({"lock_timeout": 0}, "lock_timeout.*0"),
        ({"idle_in_transaction_timeout": float("nan")}, "idle_in_transaction_timeout.*nan"),
        ({"sqlite_begin": "exclusive"}, "sqlite_begin.*'exclusive'"),
        ({"deadline": -0.5}, "deadline.*-0.5"),
        ({"deadline": True}, "deadline.*True"),
    ],
)
def test_bad_values_fail_at_the_line_that_gives_them(
    manager: SessionManager, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        manager.session_scope(**options)
    with pytest.raises(ConfigurationError, match=named):
        manager.with_session(**options)(work)


def work(session: Session) -> None:
    pass


def test_bad_config_values_fail_at_once() -> None:
    with pytest.raises(ConfigurationError, match=r"statement_timeout.*-2"):
        SessionConfig(statement_timeout=-2)
    with pytest.raises(ConfigurationError, match=r"sqlite_begin.*'exclusive'"):
        SessionConfig(sqlite_begin="exclusive")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"SESSIONSCOPE_LOCK_TIMEOUT"):
        SessionConfig.from_env(environ={"SESSIONSCOPE_LOCK_TIMEOUT": "soon"})
    config = SessionConfig.from_env(
        environ={
            "SESSIONSCOPE_STATEMENT_TIMEOUT": "2.5",
            "SESSIONSCOPE_LOCK_TIMEOUT": "none",
            "SESSIONSCOPE_SQLITE_BEGIN": "immediate",
        }
    )
    assert (config.statement_timeout, config.lock_timeout, config.sqlite_begin) == (
        2.5,
        None,
        "immediate",
    )


def test_what_sqlite_has_not_is_refused_there(manager: SessionManager, database: Database) -> None:
    if database.is_postgres:
        manager.session_scope(settings={"app.x": 1}, idle_in_transaction_timeout=5)
        return
    with pytest.raises(ConfigurationError, match=r"settings=\{'app.x': '1'\}"):
        manager.session_scope(settings={"app.x": 1})
    with pytest.raises(ConfigurationError, match=r"idle_in_transaction_timeout=5.0"):
        manager.with_session(idle_in_transaction_timeout=5)(work)
    with pytest.raises(ConfigurationError, match=r"idle_in_transaction_timeout"):
        SessionManager(
            database.url,
            config=SessionConfig(idle_in_transaction_timeout=5),
            **database.engine_options,
        )


def test_a_joined_scope_cannot_change_what_its_transaction_started_with(
    manager: SessionManager, database: Database
) -> None:
    options: dict[str, Any] = {"statement_timeout": 5}
    if database.is_postgres:
        options["settings"] = {"app.tenant_id": 7}
    with manager.session_scope(**options):
        with manager.session_scope(**options):  # the same: fine
            pass
        with pytest.raises(ConfigurationError, match=r"statement_timeout=3.0"):
            with manager.session_scope(statement_timeout=3):
                pass
        with pytest.raises(ConfigurationError, match=r"deadline"):
            with manager.session_scope(deadline=1):
                pass
        with manager.session_scope(propagation="requires_new", statement_timeout=3):
            pass  # a transaction of its own


# -- PostgreSQL: one statement, every transaction, never the next user's -------------------


def test_settings_and_timeouts_cost_one_statement(
    manager: SessionManager, database: Database
) -> None:
    if not has_settings(manager, database):
        return
    with statements_of(manager) as plain:
        with manager.session_scope() as session:
            session.execute(select(1))
    with statements_of(manager) as configured:
        with manager.session_scope(
            settings={"app.tenant_id": 7, "app.user": "ada"},
            statement_timeout=5,
            lock_timeout=2,
        ) as session:
            session.execute(select(1))
            assert session.scalar(text(TENANT)) == "7"
            assert session.scalar(text("SHOW statement_timeout")) == "5s"
            assert session.scalar(text("SHOW lock_timeout")) == "2s"
    assert len(configured) == len(plain) + 1 + 3, configured  # one more, then the 3 checks
    assert configured[0].startswith("SELECT set_config(")


def test_settings_start_every_transaction_of_the_scope(
    manager: SessionManager, database: Database
) -> None:
    if not has_settings(manager, database):
        return
    attempts = 0

    @manager.with_session(settings={"app.tenant_id": "t1"}, retry_on=lambda e: True)
    def flaky(session: Session) -> list[str]:
        nonlocal attempts
        attempts += 1
        seen = [session.scalar(text(TENANT))]
        if attempts == 1:
            raise Boom  # retried: the next attempt starts with the setting again
        session.commit()
        seen.append(session.scalar(text(TENANT)))  # after the body's own commit
        return seen

    assert flaky() == ["t1", "t1"]
    assert attempts == 2


def test_no_setting_reaches_the_next_user_of_the_connection(
    database: Database, config: SessionConfig
) -> None:
    manager = SessionManager(
        database.url, config=config, pool_size=1, max_overflow=0, **database.engine_options
    )
    if not has_settings(manager, database):
        return manager.dispose()
    try:
        with manager.session_scope(
            settings={"app.tenant_id": 1}, statement_timeout=1, read_only=True
        ) as session:
            assert session.scalar(text(TENANT)) == "1"
        with pytest.raises(Boom):
            with manager.session_scope(settings={"app.tenant_id": 2}) as session:
                raise Boom
        with manager.session_scope() as session:  # the same, only connection
            assert session.scalar(text(TENANT)) in (None, "")
            assert session.scalar(text("SHOW statement_timeout")) == "0"
            assert session.scalar(text("SHOW transaction_read_only")) == "off"
    finally:
        manager.dispose()


def test_a_read_only_scope_with_settings_still_refuses_writes(
    manager: SessionManager, database: Database
) -> None:
    if not has_settings(manager, database):
        return
    with pytest.raises(DBAPIError, match=r"read-only"):
        with manager.session_scope(read_only=True, settings={"app.x": True}) as session:
            assert session.scalar(text("SELECT current_setting('app.x')")) == "on"
            session.add(User(name="refused"))
            session.flush()
    assert database.count() == 0


def test_settings_end_with_their_scope_inside_an_isolation(
    manager: SessionManager, database: Database
) -> None:
    if not has_settings(manager, database):
        return
    with isolated(manager):
        with manager.session_scope(settings={"app.tenant_id": 1}, lock_timeout=3) as s:
            assert s.scalar(text(TENANT)) == "1"
        with manager.session_scope() as session:
            assert session.scalar(text(TENANT)) in (None, "")
            assert session.scalar(text("SHOW lock_timeout")) == "0"


# -- timeouts: stopped, classified, not retried unless asked -----------------------------


def test_a_statement_timeout_stops_the_statement_and_is_not_retried(
    manager: SessionManager,
) -> None:
    attempts = 0

    @manager.with_session(statement_timeout=0.2, retry_attempts=3)
    def report(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.execute(slow(manager))

    started = time.monotonic()
    with pytest.raises(DBAPIError) as raised:
        report()
    assert time.monotonic() - started < 3
    assert timeout_reason(raised.value) == "statement_timeout"
    assert attempts == 1


def test_retry_on_can_opt_in_to_a_timeout(manager: SessionManager) -> None:
    attempts = 0

    @manager.with_session(
        statement_timeout=0.1, retry_attempts=1, retry_on=lambda e: timeout_reason(e) is not None
    )
    def report(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.execute(slow(manager))

    with pytest.raises(DBAPIError):
        report()
    assert attempts == 2
    assert manager.monitor.snapshot()["retries"]["by_reason"] == {"statement_timeout": 1}


def test_the_next_user_gets_no_statement_timeout(database: Database, config: SessionConfig) -> None:
    manager = SessionManager(
        database.url, config=config, pool_size=1, max_overflow=0, **database.engine_options
    )
    try:
        with pytest.raises(DBAPIError):
            with manager.session_scope(statement_timeout=0.1) as session:
                session.execute(slow(manager))
        with manager.session_scope() as session:
            started = time.monotonic()
            if database.is_postgres:
                session.execute(text("SELECT pg_sleep(0.3)"))
            else:
                session.execute(text(SLOW["sqlite"].replace("300000000", "2000000")))
            assert time.monotonic() - started >= 0.1
    finally:
        manager.dispose()


def test_a_lock_timeout_bounds_the_wait_for_a_lock(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as session:
        session.add(User(name="held"))
    holder = database.observer.connect()
    try:
        holder.execute(update(User).values(name="holder's"))  # holds the row (the database)
        started = time.monotonic()
        with pytest.raises(DBAPIError) as raised:
            with manager.session_scope(lock_timeout=0.2) as session:
                session.execute(update(User).values(name="mine"))
        assert time.monotonic() - started < 3  # not the 5 s of SQLite's default
        if database.is_postgres:
            assert timeout_reason(raised.value) == "lock_timeout"
        else:
            assert "locked" in str(raised.value)  # SQLITE_BUSY: retried by decorators
    finally:
        holder.rollback()
        holder.close()
    if not database.is_postgres:
        with manager.session_scope() as session:  # the pool's connection as before
            assert session.scalar(text("PRAGMA busy_timeout")) == 5000


def test_sqlite_begin_immediate_takes_the_write_lock_at_the_start(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope(sqlite_begin="immediate") as session:
        session.execute(select(1))
        if not database.is_postgres:  # ignored on PostgreSQL
            other = sqlite3.connect(database.url.split("///", 1)[1], timeout=0)
            try:
                with pytest.raises(sqlite3.OperationalError, match=r"locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
    with manager.session_scope(sqlite_begin="immediate", read_only=True) as session:
        session.execute(select(1))  # read-only: a plain BEGIN


# -- deadlines ---------------------------------------------------------------------------


def test_a_deadline_stops_a_long_statement(manager: SessionManager) -> None:
    @manager.with_session(deadline=0.3)
    def report(session: Session) -> None:
        session.execute(slow(manager))

    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as raised:
        report()
    assert time.monotonic() - started < 3
    assert isinstance(raised.value, TimeoutError)
    # Stopped by the server-side statement timeout capped to the deadline (or, async,
    # the client-side bound, should it come first).
    cause = raised.value.__cause__
    assert type(cause) is TimeoutError or timeout_reason(cause) == "statement_timeout"  # type: ignore[arg-type]
    with pytest.raises(DeadlineExceededError):
        with manager.session_scope(deadline=0.3) as session:
            session.execute(slow(manager))


def test_a_deadline_caps_the_statement_timeout_not_the_other_way(
    manager: SessionManager,
) -> None:
    # The statement timeout is shorter: it fires first, as its own error.
    with pytest.raises(DBAPIError) as raised:
        with manager.session_scope(deadline=30, statement_timeout=0.1) as session:
            session.execute(slow(manager))
    assert not isinstance(raised.value, DeadlineExceededError)
    assert timeout_reason(raised.value) == "statement_timeout"


def test_no_retry_starts_or_backs_off_past_the_deadline(
    manager: SessionManager,
) -> None:
    attempts = 0

    @manager.with_session(deadline=0.5, retry_attempts=10, retry_on=lambda e: True)
    def flaky(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        sleep(0.1)
        raise Boom

    manager_config = manager.config
    assert manager_config.retry_delay < 0.1
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError) as raised:
        flaky()
    assert time.monotonic() - started < 0.8
    # Async: the last attempt, started in time, is cancelled by the client-side bound.
    assert isinstance(raised.value.__cause__, Boom | TimeoutError)
    assert 1 < attempts < 11


def test_a_deadline_too_short_for_the_backoff_fails_before_sleeping(
    database: Database,
) -> None:
    manager = SessionManager(
        database.url,
        config=SessionConfig(retry_delay=5, retry_jitter=False),
        **database.engine_options,
    )
    try:

        @manager.with_session(deadline=1, retry_on=lambda e: True)
        def flaky(session: Session) -> None:
            raise Boom

        started = time.monotonic()
        with pytest.raises(DeadlineExceededError, match=r"backoff of 5.000 s"):
            flaky()
        assert time.monotonic() - started < 0.5
    finally:
        manager.dispose()


def test_a_deadline_error_is_never_retried(manager: SessionManager) -> None:
    attempts = 0

    @manager.with_session(deadline=0.2, retry_on=lambda e: True, retry_attempts=5)
    def report(session: Session) -> None:
        nonlocal attempts
        attempts += 1
        session.execute(slow(manager))

    with pytest.raises(DeadlineExceededError):
        report()
    assert attempts == 1
    assert isinstance(DeadlineExceededError("x"), SessionScopeError)


# -- found by review: each failed before its fix -------------------------------------------


def test_a_deadline_alone_leaves_nothing_on_the_connection(
    database: Database, config: SessionConfig
) -> None:
    manager = SessionManager(
        database.url, config=config, pool_size=1, max_overflow=0, **database.engine_options
    )

    @manager.with_session(deadline=0.2)
    def quick(session: Session) -> None:
        session.execute(select(1))

    try:
        with manager.session_scope(deadline=0.2) as session:
            session.execute(select(1))
        quick()
        sleep(0.3)  # past both deadlines
        with manager.session_scope() as session:  # the pool's only connection
            session.execute(text(SLOW["sqlite"].replace("300000000", "100000")))
            if not database.is_postgres:
                assert session.scalar(text("PRAGMA busy_timeout")) == 5000
    finally:
        manager.dispose()


def test_callbacks_after_the_commit_are_not_bounded_by_the_deadline(
    manager: SessionManager, database: Database
) -> None:
    from sessionscope import on_commit

    seen: list[str] = []

    def slow_notify() -> None:
        sleep(0.4)
        seen.append("notified")

    with manager.session_scope(deadline=0.2) as session:
        session.add(User(name="ada"))
        on_commit(slow_notify)
    assert seen == ["notified"]
    assert database.names() == ["ada"]


def test_a_timeout_of_the_body_s_own_is_not_the_deadline(
    manager: SessionManager,
) -> None:
    class Own(TimeoutError):
        pass

    with pytest.raises(TimeoutError) as raised:
        with manager.session_scope(deadline=60):
            raise TimeoutError("the body's own")
    assert not isinstance(raised.value, DeadlineExceededError)
    with pytest.raises(Own):
        with manager.session_scope(deadline=60):
            raise Own


def test_requires_new_inside_a_deadline_keeps_to_it(manager: SessionManager) -> None:
    started = time.monotonic()
    with pytest.raises(DeadlineExceededError):
        with manager.session_scope(deadline=0.3):
            with manager.session_scope(propagation="requires_new") as other:
                other.execute(slow(manager))
    assert time.monotonic() - started < 3


def test_a_deadline_bounds_the_wait_for_a_lock(manager: SessionManager, database: Database) -> None:
    holder = database.observer.connect()
    try:
        holder.execute(  # holds the lock
            text(
                "LOCK TABLE users IN EXCLUSIVE MODE"
                if database.is_postgres
                else "INSERT INTO users (name) VALUES ('holder')"
            )
        )
        started = time.monotonic()
        with pytest.raises((DeadlineExceededError, DBAPIError)):
            with manager.session_scope(deadline=0.3) as session:
                session.add(User(name="mine"))
                session.flush()
        assert time.monotonic() - started < 2
        started = time.monotonic()
        with pytest.raises(DBAPIError):
            with manager.session_scope(sqlite_begin="immediate", lock_timeout=0.2) as s:
                s.add(User(name="mine"))
                s.flush()
        assert time.monotonic() - started < 2  # BEGIN IMMEDIATE waits the scope's timeout
    finally:
        holder.rollback()
        holder.close()


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"settings": {"app.": 1}}, r"'app\.'"),
        ({"settings": {"app..x": 1}}, r"'app\.\.x'"),
        ({"settings": {"app.x": "a\x00b"}}, "NUL"),
        ({"lock_timeout": 3_000_000}, "3000000"),
        ({"deadline": 10**10}, "10000000000"),
    ],
)
def test_values_that_would_fail_later_fail_now(
    manager: SessionManager, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(ConfigurationError, match=named):
        manager.session_scope(**options)


def test_the_same_settings_in_another_order_are_the_same(
    manager: SessionManager, database: Database
) -> None:
    if not has_settings(manager, database):
        return
    with manager.session_scope(settings={"app.a": 1, "app.b": 2}):
        with manager.session_scope(settings={"app.b": 2, "app.a": 1}):
            pass


def test_inside_an_isolation_requires_new_gives_its_caller_s_settings_back(
    manager: SessionManager, database: Database
) -> None:
    if not has_settings(manager, database):
        return
    with isolated(manager):
        with manager.session_scope(settings={"app.tenant_id": 1}, statement_timeout=30) as s:
            with manager.session_scope(
                propagation="requires_new", settings={"app.tenant_id": 2}, statement_timeout=5
            ) as other:
                assert other.scalar(text(TENANT)) == "2"
            assert s.scalar(text(TENANT)) == "1"
            assert s.scalar(text("SHOW statement_timeout")) == "30s"
        with manager.session_scope() as session:
            assert session.scalar(text(TENANT)) in (None, "")
