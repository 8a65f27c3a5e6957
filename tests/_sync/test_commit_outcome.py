# Generated from tests/_async/test_commit_outcome.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""A connection cut around COMMIT, through a real TCP proxy: known and unknown outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select, text

from sessionscope import CommitOutcomeUnknownError, SessionConfig, SessionManager
from sessionscope._sync_compat import Session
from tests._sync.conftest import POSTGRES_BACKENDS
from tests.faults import FaultProxy
from tests.models import LedgerEntry, User
from tests.support import Database

pytestmark = pytest.mark.parametrize("backend", POSTGRES_BACKENDS, indirect=True)

FAST = {"retry_delay": 0.01, "retry_max_delay": 0.05}


@pytest.fixture
def proxy(database: Database) -> Iterator[FaultProxy]:
    with FaultProxy(database.pg_server.host, database.pg_server.port) as proxy:
        yield proxy


@pytest.fixture
def proxied(database: Database, proxy: FaultProxy) -> Any:
    """A manager whose connections go through the proxy."""
    return SessionManager(
        proxy.url(database.url), config=SessionConfig(retry_delay=0.01, retry_max_delay=0.05)
    )


def test_a_cut_after_commit_was_sent_is_reported_unknown_and_not_retried(
    proxied: SessionManager, proxy: FaultProxy, database: Database
) -> None:
    calls: list[int] = []

    @proxied.with_session(retry_attempts=3, **FAST)
    def create_user(session: Session) -> None:
        calls.append(1)
        session.add(User(name="ada"))

    proxy.cut_after_forwarding(b"COMMIT")
    try:
        with pytest.raises(CommitOutcomeUnknownError) as raised:
            create_user()
        assert raised.value.__cause__ is not None
        assert proxy.fired.is_set()
        assert calls == [1]
        snapshot = proxied.monitor.snapshot()
        assert snapshot["commit_outcome_unknown"] == 1
        assert snapshot["retries"]["total"] == 0
        assert proxied.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        proxied.dispose()
    proxy.wait_server_done()
    assert database.names() == ["ada"]  # it was committed: nobody could have known


def test_a_cut_before_commit_was_forwarded_is_unknown_too(
    proxied: SessionManager, proxy: FaultProxy, database: Database
) -> None:
    proxy.cut_before_forwarding(b"COMMIT")
    try:
        with pytest.raises(CommitOutcomeUnknownError):
            with proxied.session_scope() as session:
                session.add(User(name="ada"))
    finally:
        proxied.dispose()
    proxy.wait_server_done()
    assert database.count() == 0  # this time it was not: the client cannot tell the two apart


def test_idempotent_work_is_retried_after_an_unknown_outcome(
    proxied: SessionManager, proxy: FaultProxy, database: Database
) -> None:
    calls: list[int] = []

    @proxied.with_session(idempotent=True, retry_attempts=3, **FAST)
    def transfer(session: Session, operation: str) -> str:
        calls.append(1)
        # The idempotency key: an operation already applied is not applied again.
        if session.get(LedgerEntry, operation) is not None:
            return "already applied"
        session.add(LedgerEntry(operation_id=operation, source=1, target=2, amount=5))
        return "applied"

    proxy.cut_after_forwarding(b"COMMIT")
    try:
        assert transfer("op-1") == "already applied"
        assert calls == [1, 1]
        assert proxied.monitor.snapshot()["retries"]["by_reason"] == {"commit_outcome_unknown": 1}
    finally:
        proxied.dispose()
    assert database.count(LedgerEntry) == 1


def test_a_connection_lost_before_commit_is_retried(
    proxied: SessionManager, proxy: FaultProxy, database: Database
) -> None:
    calls: list[int] = []

    @proxied.with_session(retry_attempts=3, **FAST)
    def create_user(session: Session) -> None:
        calls.append(1)
        session.add(User(name="ada"))
        session.flush()
        if len(calls) == 1:
            proxy.cut_all()  # the network goes away mid-transaction
            session.execute(select(1))

    try:
        create_user()
        assert calls == [1, 1]
    finally:
        proxied.dispose()
    proxy.wait_server_done()
    assert database.names() == ["ada"]


def test_a_commit_refused_by_the_server_is_definite(
    manager: SessionManager, database: Database
) -> None:
    # A deferred constraint fails at COMMIT: the server answered, so the
    # outcome is known (rolled back) and the error is the server's own.
    with database.observer.begin() as connection:
        connection.execute(
            text(
                "CREATE TABLE refs (user_name text REFERENCES users (name) "
                "DEFERRABLE INITIALLY DEFERRED)"
            )
        )
    try:
        with pytest.raises(Exception) as raised:
            with manager.session_scope() as session:
                session.execute(text("INSERT INTO refs VALUES ('nobody')"))
        assert not isinstance(raised.value, CommitOutcomeUnknownError)
        assert "foreign key" in str(raised.value).lower()
        assert manager.monitor.snapshot()["commit_outcome_unknown"] == 0
        assert database.scalar("SELECT count(*) FROM refs") == 0
    finally:
        with database.observer.begin() as connection:
            connection.execute(text("DROP TABLE refs"))
