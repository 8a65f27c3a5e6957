"""The bank invariant across a real failover: money moves while the primary is
stopped and its streaming replica promoted.

Sync workers (threads, psycopg) and async workers (tasks, asyncpg) transfer
money as in ``test_bank_invariant.py``, through a multi-host URL with
``target_session_attrs=read-write``. Midway, the primary is stopped (``pg_ctl
stop -m fast``: its sessions are terminated, and it sends the replica all its
WAL before it exits, as a planned switchover does) and the replica promoted
(``pg_ctl promote``). The retries span the gap; afterwards, on the new primary,
nothing is lost and nothing doubled. (With an immediate stop, commits not yet
streamed are lost whatever the client does: asynchronous replication's
trade, which only synchronous replication removes.)
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine
from sqlalchemy.pool import NullPool

from sessionscope import AsyncSessionManager, SessionConfig, SessionManager
from tests.models import Account, Base
from tests.pg_server import PostgresServer
from tests.test_bank_invariant import (
    ACCOUNTS,
    OPENING,
    SYNC_WORKERS,
    Outcomes,
    _async_workers,
    _sync_worker,
    check_the_books,
)

pytestmark = pytest.mark.postgres

SECONDS = float(os.environ.get("SESSIONSCOPE_BANK_SECONDS", "8"))
# Enough to span a promotion (about a second here), backing off to 0.3 s.
RETRIES = {"retry_attempts": 40, "retry_delay": 0.02, "retry_max_delay": 0.3}


@pytest.fixture
def cluster(pg_server: PostgresServer) -> Iterator[tuple[PostgresServer, PostgresServer]]:
    primary = PostgresServer()
    primary.start()
    replica = None
    try:
        replica = primary.start_replica()
        engine = create_engine(primary.url("psycopg"), poolclass=NullPool)
        with engine.begin() as connection:
            Base.metadata.create_all(connection)
            connection.execute(
                Account.__table__.insert(),
                [{"id": n, "balance": OPENING} for n in range(1, ACCOUNTS + 1)],
            )
        engine.dispose()
        yield primary, replica
    finally:
        if replica is not None:
            replica.close()
        primary.close()


def test_no_transfer_is_lost_or_doubled_across_a_promotion(
    cluster: tuple[PostgresServer, PostgresServer],
) -> None:
    primary, replica = cluster
    hosts = f"host={primary.host}:{primary.port}&host={replica.host}:{replica.port}"
    query = f"/{primary.dbname}?{hosts}&target_session_attrs=read-write"
    config = SessionConfig(log_level="ERROR")
    sync_manager = SessionManager(f"postgresql+psycopg://{primary.user}@{query}", config=config)
    async_manager = AsyncSessionManager(
        f"postgresql+asyncpg://{primary.user}@{query}", config=config
    )
    stop = threading.Event()
    outcomes: Outcomes = {}
    threads = [
        threading.Thread(target=_sync_worker, args=(sync_manager, stop, outcomes, RETRIES))
        for _ in range(SYNC_WORKERS)
    ]
    threads.append(
        threading.Thread(
            target=lambda: asyncio.run(_async_workers(async_manager, stop, outcomes, RETRIES))
        )
    )
    for thread in threads:
        thread.start()
    time.sleep(SECONDS / 3)
    before = Counter(outcomes.values())
    started = time.monotonic()
    primary.stop("fast")
    replica.promote()
    promoted_in = time.monotonic() - started
    time.sleep(SECONDS * 2 / 3)
    stop.set()
    for thread in threads:
        thread.join(60)
        assert not thread.is_alive(), "a worker did not stop"
    assert sync_manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    sync_retries = sync_manager.monitor.snapshot()["retries"]
    async_retries = async_manager.monitor.snapshot()["retries"]
    sync_manager.dispose()

    observer = create_engine(replica.url("psycopg"), poolclass=NullPool)
    try:
        recorded = check_the_books(observer, outcomes)
    finally:
        observer.dispose()
    tally = Counter(outcomes.values())
    lost = sum(1 for op, outcome in outcomes.items() if outcome == "done" and not recorded[op])
    doubled = sum(1 for rows in recorded.values() if rows > 1)
    print(
        f"\nfailover: {len(outcomes)} transfers {dict(tally)} ({before['done']} done before "
        f"the stop), promoted in {promoted_in:.2f} s; retries sync {sync_retries['by_reason']}, "
        f"async {async_retries['by_reason']}; lost {lost}, doubled {doubled}"
    )
    assert lost == 0 and doubled == 0
    assert tally["done"] > before["done"] + 20, "no transfer went through after the promotion"
    assert sync_retries["by_reason"].get("connection", 0) >= 1
    assert async_retries["by_reason"].get("connection", 0) >= 1
