# Generated from tests/_async/test_holders.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""Who holds the pool (README "Monitoring"): a checkout that waits too long names the
scopes holding the manager's connections; a scope holding its connection without a
statement for too long is named; each found on its task's or thread's stack."""

from __future__ import annotations

import logging
import threading
import time

import pytest
from sqlalchemy import text

from sessionscope import ConfigurationError, SessionConfig
from sessionscope._sync import SessionManager
from tests._sync_compat import Event, run_concurrently, sleep, wait_for_event
from tests.support import Database


def warnings_of(caplog: pytest.LogCaptureFixture, start: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and r.getMessage().split("] ", 1)[-1].startswith(start)
    ]


def test_a_slow_checkout_names_the_scopes_holding_the_connections(
    database: Database, config: SessionConfig, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(
        database.url,
        config=config.replace(slow_checkout_seconds=0.2, log_level="WARNING"),
        pool_size=1,
        max_overflow=0,
        pool_timeout=5,
        **database.engine_options,
    )
    holding = Event()

    def hold_the_only_connection() -> None:
        with manager.session_scope() as session:
            session.execute(text("SELECT 1"))
            holding.set()
            sleep(0.8)  # a slow call inside the transaction

    def wait_for_it() -> None:
        wait_for_event(holding)
        with manager.session_scope() as session:
            session.execute(text("SELECT 2"))

    try:
        with caplog.at_level(logging.WARNING, logger="sessionscope"):
            results = run_concurrently(hold_the_only_connection, wait_for_it)
        assert [r for r in results if isinstance(r, BaseException)] == []
        (warning,) = warnings_of(caplog, "slow checkout")
        assert "slow_checkout_seconds=0.2" in warning
        assert "1 scope(s) of this manager hold connections" in warning
        assert "opened in " in warning and "hold_the_only_connection at " in warning
        assert __file__.replace(".pyc", ".py") in warning
        assert manager._holders == {} and manager._waiting == {}
    finally:
        manager.dispose()


def test_an_idle_scope_is_named_once(
    database: Database, config: SessionConfig, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(
        database.url,
        config=config.replace(idle_scope_seconds=0.2, log_level="WARNING"),
        **database.engine_options,
    )

    def awaits_inside_a_transaction() -> None:
        with manager.session_scope() as session:
            session.execute(text("SELECT 1"))
            sleep(0.7)  # no statement: the connection sits idle

    def busy_scope() -> None:
        with manager.session_scope() as session:
            for _ in range(7):
                session.execute(text("SELECT 1"))
                sleep(0.1)

    try:
        with caplog.at_level(logging.WARNING, logger="sessionscope"):
            results = run_concurrently(awaits_inside_a_transaction, busy_scope)
        assert [r for r in results if isinstance(r, BaseException)] == []
        (warning,) = warnings_of(caplog, "idle scope")
        assert "idle_scope_seconds=0.2" in warning
        assert "awaits_inside_a_transaction at " in warning
    finally:
        manager.dispose()


def test_no_warning_when_off_or_quick(
    manager: SessionManager, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="sessionscope"):
        for _ in range(3):
            with manager.session_scope() as session:
                session.execute(text("SELECT 1"))
    assert warnings_of(caplog, "slow checkout") == warnings_of(caplog, "idle scope") == []
    assert manager._holders == {}


def test_the_thresholds_are_checked(config: SessionConfig) -> None:
    with pytest.raises(ConfigurationError, match="idle_scope_seconds"):
        config.replace(idle_scope_seconds=-1)
    assert config.replace(slow_checkout_seconds=None).slow_checkout_seconds is None


SLOW_STATEMENT = {
    "postgresql": "SELECT pg_sleep(0.6)",
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
    "SELECT count(*) FROM (SELECT x FROM c LIMIT 3000000) AS t",
}


def test_a_scope_running_a_long_statement_is_not_idle(
    database: Database, config: SessionConfig, caplog: pytest.LogCaptureFixture
) -> None:
    manager = SessionManager(
        database.url,
        config=config.replace(idle_scope_seconds=0.1, log_level="WARNING"),
        **database.engine_options,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="sessionscope"):
            with manager.session_scope() as session:
                started = time.perf_counter()
                session.execute(text(SLOW_STATEMENT[manager.engine.dialect.name]))
                assert time.perf_counter() - started > 0.2  # longer than idle_scope_seconds
        assert warnings_of(caplog, "idle scope") == []
    finally:
        manager.dispose()


def test_one_watchdog_thread_for_every_manager_and_after_dispose(
    database: Database, config: SessionConfig
) -> None:
    managers = [
        SessionManager(database.url, config=config, **database.engine_options) for _ in range(3)
    ]
    try:
        for manager in managers:
            with manager.session_scope():
                pass
        names = [t.name for t in threading.enumerate()]
        assert names.count("sessionscope-watchdog") == 1
        managers[0].dispose()
        watchdog = managers[0]._watchdog
        assert watchdog is not None and watchdog.running is False
        with managers[0].session_scope():  # used again: watched again
            pass
        assert watchdog.running is True
    finally:
        for manager in managers:
            manager.dispose()
