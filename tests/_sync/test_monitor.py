# Generated from tests/_async/test_monitor.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""The monitor: counters, listeners, logging, slow transactions, and monitoring off."""

from __future__ import annotations

import json
import linecache
import logging
import socket
from typing import Any

import pytest
from sqlalchemy import make_url, select, text
from sqlalchemy.exc import DBAPIError

from sessionscope import (
    ConfigurationError,
    Rollback,
    SessionConfig,
    SessionManager,
    TransactionRolledBackError,
    on_commit,
)
from sessionscope._sync import scope as scope_module
from sessionscope._sync_compat import IS_ASYNC, Session, sleep
from sessionscope.monitor import MonitorEvent
from tests._sync_compat import run_concurrently
from tests.models import User
from tests.support import Database


class Boom(Exception):
    pass


def test_the_snapshot_counts_every_kind_of_ending(
    manager: SessionManager, database: Database
) -> None:
    with manager.session_scope() as session:  # committed
        session.add(User(name="ada"))
        with manager.session_scope(propagation="nested"):  # released
            pass
        with pytest.raises(Boom):
            with manager.session_scope(propagation="nested"):  # rolled back
                raise Boom
    with pytest.raises(Boom):
        with manager.session_scope():  # exception
            raise Boom
    with pytest.raises(TransactionRolledBackError):
        with manager.session_scope():  # rollback-only
            try:
                with manager.session_scope():
                    raise Boom
            except Boom:
                pass
    with manager.session_scope(auto_commit=False) as session:  # not committed
        session.add(User(name="bob"))
    with pytest.raises(Exception, match=r"(?i)unique"):
        with manager.session_scope() as session:  # commit failed
            session.add(User(name="ada"))
    with manager.session_scope() as session:  # requested
        session.add(User(name="cid"))
        raise Rollback

    snapshot = manager.monitor.snapshot()
    assert json.loads(json.dumps(snapshot)) == snapshot
    assert snapshot["sessions"] == {"opened": 6, "closed": 6, "active": 0}
    assert snapshot["transactions"] == {
        "committed": 1,
        "rolled_back": 5,
        "rolled_back_by_cause": {
            "exception": 1,
            "requested": 1,
            "rollback_only": 1,
            "commit_failed": 1,
            "not_committed": 1,
        },
        "slow": 0,
    }
    assert snapshot["savepoints"] == {"opened": 2, "released": 1, "rolled_back": 1}
    assert snapshot["errors"]["Boom"] == 2  # the body's, and the swallowed one
    assert snapshot["errors"]["IntegrityError"] == 1
    assert "Rollback" not in snapshot["errors"]  # asked for: not an error
    assert snapshot["transaction_duration"]["count"] == 6
    assert snapshot["connection_wait"]["count"] == 6
    durations = snapshot["transaction_duration"]
    assert 0 < durations["p50"] <= durations["p99"] <= durations["max"]
    assert snapshot["pool"]["checked_out"] == 0

    manager.monitor.reset()
    assert manager.monitor.snapshot()["sessions"]["opened"] == 0


def test_the_pool_figures_are_live(manager: SessionManager) -> None:
    with manager.session_scope():
        pool = manager.monitor.pool_status()
        assert pool["checked_out"] == 1
    assert manager.monitor.pool_status()["checked_out"] == 0


def test_listeners_get_every_event(manager: SessionManager) -> None:
    events: list[MonitorEvent] = []
    manager.monitor.add_listener(events.append)

    class Flaky(Exception):
        pass

    @manager.with_session(
        retry_attempts=1, retry_delay=0.0, retry_on=lambda e: isinstance(e, Flaky)
    )
    def flaky(session: Session) -> None:
        if not any(e.kind == "retry" for e in events):
            raise Flaky

    flaky()
    kinds = [event.kind for event in events]
    assert kinds == [
        "call_started",
        "session_opened",
        "connection_acquired",
        "session_closed",
        "rolled_back",
        "retry",
        "session_opened",
        "connection_acquired",
        "session_closed",
        "committed",
        "call_ended",
    ]
    assert {event.manager for event in events} == {manager.name}
    assert events[0].function == events[-1].function == flaky.__qualname__
    assert events[-1].error is None
    opened = events[1]
    assert (opened.read_only, opened.isolation_level, opened.propagation) == (
        False,
        None,
        "required",
    )
    retry = events[5]
    assert (retry.attempt, retry.reason, type(retry.error)) == (1, "retry_on", Flaky)
    rolled_back = events[4]
    assert (rolled_back.reason, type(rolled_back.error)) == ("exception", Flaky)
    assert events[-2].duration is not None and events[-2].duration > 0
    assert events[1].transaction_id != events[6].transaction_id

    manager.monitor.remove_listener(events.append)
    events.clear()
    with manager.session_scope():
        pass
    assert events == []


def test_a_failing_listener_is_logged_and_changes_nothing(
    manager: SessionManager, database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(event: MonitorEvent) -> None:
        raise RuntimeError("listener bug")

    manager.monitor.add_listener(broken)
    with caplog.at_level(logging.ERROR, logger="sessionscope"):
        with manager.session_scope() as session:
            session.add(User(name="ada"))
    assert database.names() == ["ada"]
    assert any("listener" in r.getMessage() for r in caplog.records)


def test_log_records_name_the_manager_and_transaction(
    manager: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sessionscope"):
        with manager.session_scope():
            pass
        with pytest.raises(Boom):
            with manager.session_scope():
                raise Boom("why")
    records = [r for r in caplog.records if r.name == "sessionscope"]
    levels = {(r.levelname, r.getMessage().split("] ", 1)[1].split(":")[0]) for r in records}
    assert ("DEBUG", "session opened") in levels
    assert ("DEBUG", "committed") in levels
    assert ("DEBUG", "session closed") in levels
    assert ("INFO", "rolling back (exception)") in levels
    assert all(getattr(r, "sessionscope_manager", None) == manager.name for r in records)
    assert {getattr(r, "transaction_id", None) for r in records} == {1, 2}
    assert any("Boom('why')" in r.getMessage() for r in records)


def test_a_manager_logs_nothing_below_its_log_level(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with SessionManager(database.url, config=SessionConfig(log_level="WARNING")) as manager:
        with caplog.at_level(logging.DEBUG, logger="sessionscope"):
            with pytest.raises(Boom):
                with manager.session_scope():
                    raise Boom
    assert [r for r in caplog.records if r.name == "sessionscope"] == []


def test_a_slow_transaction_is_reported_with_where_it_was_opened(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    config = SessionConfig(slow_transaction_seconds=0.05)
    with SessionManager(database.url, config=config) as manager:
        with caplog.at_level(logging.WARNING, logger="sessionscope"):
            with manager.session_scope() as session:  # the line reported
                session.execute(select(1))
                sleep(0.08)
        assert manager.monitor.snapshot()["transactions"]["slow"] == 1
    [record] = [r for r in caplog.records if "slow transaction" in r.getMessage()]
    message = record.getMessage()
    assert record.levelname == "WARNING"
    assert "test_monitor.py" in message
    assert "test_a_slow_transaction_is_reported_with_where_it_was_opened" in message
    line = int(message.split("test_monitor.py:")[1].split()[0])
    assert "# the line reported" in linecache.getline(__file__, line)


def test_passwords_never_reach_the_logs(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="sessionscope"):
        if database.is_postgres:
            url = database.url.replace("postgres@", "postgres:s3cret-pw@")
            with SessionManager(url) as manager:
                with pytest.raises(Boom):
                    with manager.session_scope():
                        raise Boom
                assert "s3cret-pw" not in json.dumps(manager.monitor.snapshot())
            # An unreachable server: the connection errors are logged as retries.
            closed_port = url.replace(":%d/" % database.pg_server.port, ":1/")
            config = SessionConfig(retry_attempts=1, retry_delay=0.01)
            with SessionManager(closed_port, config=config) as manager:
                with pytest.raises(Exception) as raised:
                    with manager.session_scope():
                        pass
        else:  # SQLite URLs take no password: the error about it must not show it
            url = database.url.replace(":///", "://user:s3cret-pw@/")
            with pytest.raises(ConfigurationError) as raised:
                SessionManager(url)
    assert "s3cret-pw" not in str(raised.value)
    assert all("s3cret-pw" not in r.getMessage() for r in caplog.records)


def test_monitoring_off_reads_no_clock_and_takes_no_lock(
    database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = SessionConfig(enable_monitoring=False)
    with SessionManager(database.url, config=config) as manager:

        class Forbidden:
            def __getattr__(self, name: str) -> Any:
                raise AssertionError("monitoring is off, yet %s was used" % name)

        def clock() -> float:
            raise AssertionError("monitoring is off, yet the clock was read")

        monkeypatch.setattr(scope_module, "perf_counter", clock)
        for unused in ("_lock", "_pending_waits", "_pending_commits"):
            monkeypatch.setattr(manager.monitor, unused, Forbidden())
        events: list[MonitorEvent] = []
        manager.monitor._listeners = (events.append,)
        with manager.session_scope() as session:
            session.add(User(name="ada"))
            with manager.session_scope(propagation="nested"):
                on_commit(lambda: None)
        with pytest.raises(Boom):
            with manager.session_scope():
                raise Boom
        monkeypatch.undo()
        snapshot = manager.monitor.snapshot()
    assert events == []
    assert snapshot["enabled"] is False
    assert snapshot["sessions"]["opened"] == snapshot["transactions"]["committed"] == 0


def test_counts_add_up_under_concurrency(manager: SessionManager, database: Database) -> None:
    workers, scopes = (200, 5) if IS_ASYNC else (8, 60)
    seen: list[MonitorEvent] = []
    manager.monitor.add_listener(seen.append)

    def work() -> None:
        for n in range(scopes):
            try:
                with manager.session_scope() as session:
                    session.execute(text("SELECT 1"))
                    if n % 3 == 0:
                        raise Boom
            except Boom:
                pass

    results = run_concurrently(*(work for _ in range(workers)))
    assert results == [None] * workers
    total = workers * scopes
    rolled_back = workers * len(range(0, scopes, 3))
    snapshot = manager.monitor.snapshot()
    assert snapshot["sessions"] == {"opened": total, "closed": total, "active": 0}
    assert snapshot["transactions"]["committed"] == total - rolled_back
    assert snapshot["transactions"]["rolled_back"] == rolled_back
    assert snapshot["transaction_duration"]["count"] == total
    assert sum(1 for event in seen if event.kind == "committed") == total - rolled_back


def test_a_connection_that_cannot_be_had_is_not_counted_as_a_session(
    database: Database, config: SessionConfig
) -> None:
    url = make_url(database.url)
    if database.is_postgres:
        with socket.socket() as probe:  # a port nothing listens on
            probe.bind(("127.0.0.1", 0))
            url = url.set(host="127.0.0.1", port=probe.getsockname()[1])
    else:
        url = url.set(database="/nonexistent-directory/test.db")
    manager = SessionManager(url, config=SessionConfig(retry_attempts=1, retry_delay=0.01))
    try:
        with pytest.raises((DBAPIError, OSError)):
            with manager.session_scope():
                pass
        # aiosqlite stops the worker thread of a failed connection in the
        # background, with a future of this event loop: let it finish first.
        sleep(0.1)
        snapshot = manager.monitor.snapshot()
        assert snapshot["sessions"] == {"opened": 0, "closed": 0, "active": 0}
        # Every attempt's error, by type (SQLite's "unable to open" is not retried).
        attempts = 2 if database.is_postgres else 1
        assert sum(snapshot["errors"].values()) == attempts
        assert snapshot["retries"]["total"] == attempts - 1
    finally:
        manager.dispose()
