"""Money moves between accounts while a killer terminates random backends.

Sync workers (threads, psycopg) and async workers (tasks, asyncpg) transfer
money under SERIALIZABLE with retries; every transfer writes a ledger row
keyed by its id in the same transaction. Whatever the killer hits, at the end:

- the total is unchanged and every balance agrees with the ledger;
- a transfer reported done has exactly one ledger row, one reported failed
  has none, one reported unknown (CommitOutcomeUnknownError) at most one;
- no connection is checked out and no backend is idle in a transaction.

Bounded: ``SESSIONSCOPE_BANK_SECONDS`` (default 8) of traffic.
"""

from __future__ import annotations

import asyncio
import os
import random
import threading
import time
import uuid
from collections import Counter
from typing import Any

import pytest
from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

from sessionscope import AsyncSessionManager, CommitOutcomeUnknownError, SessionManager
from tests.models import Account, LedgerEntry
from tests.support import Database

pytestmark = pytest.mark.postgres

SECONDS = float(os.environ.get("SESSIONSCOPE_BANK_SECONDS", "8"))
ACCOUNTS, OPENING = 8, 1000
SYNC_WORKERS, ASYNC_WORKERS = 3, 6
APPLICATION = "sessionscope-bank"
RETRIES = {"retry_attempts": 8, "retry_delay": 0.005, "retry_max_delay": 0.05}

FAILURES: Counter[str] = Counter()
Outcomes = dict[str, str]  # operation id -> "done" | "failed" | "unknown"


def _plan(rng: random.Random) -> tuple[str, int, int, int]:
    source, target = rng.sample(range(1, ACCOUNTS + 1), 2)
    return uuid.uuid4().hex, source, target, rng.randint(1, 50)


def _record(outcomes: Outcomes, operation: str, error: BaseException | None) -> None:
    if error is None:
        outcomes[operation] = "done"
    elif isinstance(error, CommitOutcomeUnknownError):
        outcomes[operation] = "unknown"
    else:
        outcomes[operation] = "failed"
        FAILURES[type(error).__name__ + ": " + str(error).splitlines()[0][:90]] += 1


def _sync_worker(
    manager: SessionManager,
    stop: threading.Event,
    outcomes: Outcomes,
    retries: dict[str, Any] = RETRIES,
) -> None:
    @manager.with_session(isolation_level="SERIALIZABLE", **retries)
    def transfer(session: Session, operation: str, source: int, target: int, amount: int) -> None:
        balance = session.scalar(select(Account.balance).where(Account.id == source))
        if balance is None or balance < amount:
            amount = 0  # still a transfer, of nothing: the ledger records it
        session.execute(
            update(Account).where(Account.id == source).values(balance=Account.balance - amount)
        )
        session.execute(
            update(Account).where(Account.id == target).values(balance=Account.balance + amount)
        )
        session.add(
            LedgerEntry(operation_id=operation, source=source, target=target, amount=amount)
        )

    rng = random.Random()
    while not stop.is_set():
        operation, source, target, amount = _plan(rng)
        try:
            transfer(operation, source, target, amount)
        except Exception as error:
            _record(outcomes, operation, error)
        else:
            _record(outcomes, operation, None)


async def _async_workers(
    manager: AsyncSessionManager,
    stop: threading.Event,
    outcomes: Outcomes,
    retries: dict[str, Any] = RETRIES,
) -> None:
    @manager.with_session(isolation_level="SERIALIZABLE", **retries)
    async def transfer(
        session: AsyncSession, operation: str, source: int, target: int, amount: int
    ) -> None:
        balance = await session.scalar(select(Account.balance).where(Account.id == source))
        if balance is None or balance < amount:
            amount = 0
        await session.execute(
            update(Account).where(Account.id == source).values(balance=Account.balance - amount)
        )
        await session.execute(
            update(Account).where(Account.id == target).values(balance=Account.balance + amount)
        )
        session.add(
            LedgerEntry(operation_id=operation, source=source, target=target, amount=amount)
        )

    async def worker() -> None:
        rng = random.Random()
        while not stop.is_set():
            operation, source, target, amount = _plan(rng)
            try:
                await transfer(operation, source, target, amount)
            except Exception as error:
                _record(outcomes, operation, error)
            else:
                _record(outcomes, operation, None)

    await asyncio.gather(*(worker() for _ in range(ASYNC_WORKERS)))
    await manager.dispose()


def check_the_books(observer: Any, outcomes: Outcomes) -> Counter[str]:
    """Nothing created or lost, every balance agrees with the ledger, and every
    transfer applied as often as its outcome says: done once, failed never,
    unknown at most once. Returns how many ledger rows each operation has."""
    with observer.connect() as connection:
        total = connection.execute(select(func.sum(Account.balance))).scalar_one()
        balances = dict(connection.execute(select(Account.id, Account.balance)).all())
        ledger = connection.execute(
            select(
                LedgerEntry.operation_id, LedgerEntry.source, LedgerEntry.target, LedgerEntry.amount
            )
        ).all()
    assert total == ACCOUNTS * OPENING

    expected = {n: OPENING for n in range(1, ACCOUNTS + 1)}
    for _, source, target, amount in ledger:
        expected[source] -= amount
        expected[target] += amount
    assert balances == expected, "balances disagree with the ledger"

    recorded = Counter(row[0] for row in ledger)
    for operation, outcome in outcomes.items():
        rows = recorded.get(operation, 0)
        if outcome == "done":
            assert rows == 1, f"transfer {operation} reported done has {rows} ledger rows"
        elif outcome == "failed":
            assert rows == 0, f"transfer {operation} reported failed was applied"
        else:
            assert rows <= 1
    assert set(recorded) <= set(outcomes), "a ledger row of an operation nobody ran"
    return recorded


def _killer(database: Database, stop: threading.Event, kills: list[int]) -> None:
    rng = random.Random()
    with database.pg_server.connect() as connection:
        while not stop.wait(rng.uniform(0.02, 0.08)):
            pids = [
                row[0]
                for row in connection.execute(
                    "SELECT pid FROM pg_stat_activity WHERE application_name = %s",
                    (APPLICATION,),
                )
            ]
            if pids:
                connection.execute("SELECT pg_terminate_backend(%s)", (rng.choice(pids),))
                kills.append(1)


@pytest.fixture
def bank(pg_server: Any, tmp_path: Any) -> Any:
    database = Database("psycopg", False, tmp_path, pg_server)
    database.reset_schema()
    with database.observer.begin() as connection:
        connection.execute(
            Account.__table__.insert(),
            [{"id": n, "balance": OPENING} for n in range(1, ACCOUNTS + 1)],
        )
    yield database
    database.close()


def test_money_is_never_created_lost_or_moved_twice(bank: Database) -> None:
    sync_url = bank.url
    async_url = sync_url.replace("postgresql+psycopg", "postgresql+asyncpg")
    sync_manager = SessionManager(sync_url, connect_args={"application_name": APPLICATION})
    async_manager = AsyncSessionManager(
        async_url, connect_args={"server_settings": {"application_name": APPLICATION}}
    )
    stop = threading.Event()
    outcomes: Outcomes = {}
    kills: list[int] = []
    threads = [
        threading.Thread(target=_sync_worker, args=(sync_manager, stop, outcomes))
        for _ in range(SYNC_WORKERS)
    ]
    threads.append(
        threading.Thread(target=lambda: asyncio.run(_async_workers(async_manager, stop, outcomes)))
    )
    killer = threading.Thread(target=_killer, args=(bank, stop, kills))
    for thread in [*threads, killer]:
        thread.start()
    time.sleep(SECONDS)
    stop.set()
    for thread in [*threads, killer]:
        thread.join(60)
        assert not thread.is_alive(), "a worker did not stop"

    assert sync_manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert async_manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    sync_manager.dispose()
    assert bank.idle_in_transaction() == 0

    check_the_books(bank.observer, outcomes)

    tally = Counter(outcomes.values())
    print(f"\nbank: {len(outcomes)} transfers {dict(tally)}, {len(kills)} backends killed")
    print(FAILURES)
    assert tally["done"] > 50, tally
    assert kills, "the killer never struck: the test proved nothing"
