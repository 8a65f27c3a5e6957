"""The unit of work and the databases it runs on.

One unit of work: SELECT one row of ``bench_accounts`` by primary key, UPDATE
its balance, COMMIT. Every variant runs exactly these statements; what differs
is what wraps them (the raw driver, SQLAlchemy's ``sessionmaker.begin()``,
sessionscope's scopes).

SQLite runs on a file in a temporary directory, in WAL mode with
``synchronous=NORMAL`` on every connection: COMMIT then costs no fsync, so
the database costs least and the code around it shows most. (With
``--sqlite-durable``, SQLite's defaults are kept: a rollback journal and an
fsync per COMMIT, which dominate the unit and its noise.)
"""

from __future__ import annotations

import dataclasses
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession
from sqlalchemy.orm import Session
from sqlalchemy.pool import NullPool

__all__ = [
    "ACCOUNTS",
    "begin_batch",
    "Database",
    "total_balance",
    "unit_of_work",
    "unit_of_work_async",
]

ACCOUNTS = 1000  # rows in bench_accounts; keys are drawn from 1..ACCOUNTS

SELECT = text("SELECT balance FROM bench_accounts WHERE id = :id")
UPDATE = text("UPDATE bench_accounts SET balance = :balance WHERE id = :id")

# The same statements in each raw driver's parameter style.
SQLITE_SELECT = "SELECT balance FROM bench_accounts WHERE id = ?"
SQLITE_UPDATE = "UPDATE bench_accounts SET balance = ? WHERE id = ?"
PSYCOPG_SELECT = "SELECT balance FROM bench_accounts WHERE id = %s"
PSYCOPG_UPDATE = "UPDATE bench_accounts SET balance = %s WHERE id = %s"
ASYNCPG_SELECT = "SELECT balance FROM bench_accounts WHERE id = $1"
ASYNCPG_UPDATE = "UPDATE bench_accounts SET balance = $1 WHERE id = $2"


def with_sqlite_begin(maker: Any) -> Any:
    """``maker`` with the BEGIN a manager's sessions emit on SQLite (sessionscope's
    ``after_begin`` listener, which makes transactions and SAVEPOINTs real) and
    nothing else of sessionscope: raw SQLAlchemy doing the same database work."""
    from sessionscope._sqlite import begin_sqlite_transaction

    listeners = {"after_begin": begin_sqlite_transaction}
    if issubclass(maker.class_, AsyncSession):  # also a plain sessionmaker making them
        from sessionscope._async_compat import listen_session_events as listen_async

        listen_async(maker, listeners)  # (its sync sessions: no scope)
    else:
        from sessionscope._sync_compat import ScopeHolder
        from sessionscope._sync_compat import listen_session_events as listen_sync

        # The listener reads the session's scope: none, for these sessions.
        maker.class_ = type("Session", (ScopeHolder, maker.class_), {})
        listen_sync(maker, listeners)
    return maker


def begin_batch(
    maker: Any, then: Callable[[], object] | None = None
) -> Callable[[Sequence[int]], None]:
    """Raw SQLAlchemy's batch: the unit of work per key in ``with maker.begin() as
    session:``, and ``then()`` after each, if given."""

    def run(keys: Sequence[int]) -> None:
        for key in keys:
            with maker.begin() as session:
                unit_of_work(session, key)

    def run_then(keys: Sequence[int]) -> None:
        assert then is not None
        for key in keys:
            with maker.begin() as session:
                unit_of_work(session, key)
            then()

    return run if then is None else run_then


def unit_of_work(session: Session, key: int) -> None:
    balance = session.execute(SELECT, {"id": key}).scalar_one()
    session.execute(UPDATE, {"id": key, "balance": balance + 1})


async def unit_of_work_async(session: AsyncSession, key: int) -> None:
    balance = (await session.execute(SELECT, {"id": key})).scalar_one()
    await session.execute(UPDATE, {"id": key, "balance": balance + 1})


@dataclasses.dataclass(frozen=True)
class Database:
    """Where the unit of work runs: a SQLite file or the PostgreSQL server."""

    backend: str  # "sqlite" or "postgres"
    sync_url: str
    async_url: str
    sqlite_path: Path | None = None
    conninfo: str | None = None  # libpq URL for psycopg and asyncpg
    durable: bool = False  # SQLite: keep the rollback journal and synchronous=FULL
    # PostgreSQL behind the latency proxy: the round trip it adds, and as measured.
    added_rtt_ms: float = 0.0
    rtt_ms: float | None = None

    @property
    def latency_tag(self) -> str:
        """Empty, or behind the latency proxy the round trip it adds, e.g. "@1ms"."""
        return "" if self.rtt_ms is None else f"@{self.added_rtt_ms:g}ms"

    def through(self, proxy: Any, added_ms: float, measured_ms: float) -> Database:
        """The same database, reached through ``proxy`` (bench/latency_proxy.py)."""
        assert self.conninfo is not None
        return dataclasses.replace(
            self,
            sync_url=proxy.url(self.sync_url),
            async_url=proxy.url(self.async_url),
            conninfo=proxy.url(self.conninfo),
            rtt_ms=measured_ms,
            added_rtt_ms=added_ms,
        )

    @classmethod
    def sqlite(cls, directory: Path, durable: bool) -> Database:
        path = directory / "bench.db"
        return cls(
            "sqlite", f"sqlite:///{path}", f"sqlite+aiosqlite:///{path}", path, None, durable
        )

    @classmethod
    def postgres(cls, server: Any) -> Database:
        return cls(
            "postgres",
            server.url("psycopg"),
            server.url("asyncpg"),
            conninfo=server.conninfo,
        )

    @property
    def fast_sqlite(self) -> bool:
        return self.backend == "sqlite" and not self.durable

    def prepare(self, engine: Engine | AsyncEngine) -> None:
        """Make every connection of ``engine`` run like the raw driver's (call before use)."""
        if not self.fast_sqlite:
            return
        sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        event.listen(sync_engine, "connect", _sqlite_synchronous_normal)

    def sqlite3_connection(self) -> sqlite3.Connection:
        """A raw connection that leaves BEGIN to us (``isolation_level=None``)."""
        assert self.sqlite_path is not None
        connection = sqlite3.connect(self.sqlite_path, isolation_level=None)
        if self.fast_sqlite:
            connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def create_table(self) -> None:
        """(Re)create ``bench_accounts`` with ACCOUNTS rows of balance 0."""
        engine = create_engine(self.sync_url, poolclass=NullPool)
        try:
            with engine.begin() as connection:
                connection.exec_driver_sql("DROP TABLE IF EXISTS bench_accounts")
                connection.exec_driver_sql(
                    "CREATE TABLE bench_accounts (id integer PRIMARY KEY, balance integer NOT NULL)"
                )
                connection.execute(
                    text("INSERT INTO bench_accounts (id, balance) VALUES (:id, 0)"),
                    [{"id": key} for key in range(1, ACCOUNTS + 1)],
                )
            if self.fast_sqlite:
                with engine.connect() as connection:  # WAL is a property of the file: once
                    connection.exec_driver_sql("PRAGMA journal_mode = WAL")
        finally:
            engine.dispose()

    def vacuum(self) -> None:
        """PostgreSQL: clean up dead row versions (the throwaway server has no autovacuum)."""
        if self.backend != "postgres":
            return
        engine = create_engine(self.sync_url, poolclass=NullPool, isolation_level="AUTOCOMMIT")
        try:
            with engine.connect() as connection:
                connection.exec_driver_sql("VACUUM ANALYZE bench_accounts")
        finally:
            engine.dispose()


def total_balance(database: Database) -> int:
    """The sum of all balances: every committed unit of work adds exactly 1."""
    engine = create_engine(database.sync_url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            return int(
                connection.exec_driver_sql("SELECT sum(balance) FROM bench_accounts").scalar_one()
            )
    finally:
        engine.dispose()


def _sqlite_synchronous_normal(dbapi_connection: Any, connection_record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.close()


def run_sqlite3(connection: sqlite3.Connection, keys: Sequence[int]) -> None:
    """The raw sqlite3 unit of work: explicit BEGIN, the statements, commit()."""
    execute = connection.execute
    for key in keys:
        execute("BEGIN")
        (balance,) = execute(SQLITE_SELECT, (key,)).fetchone()
        execute(SQLITE_UPDATE, (balance + 1, key))
        connection.commit()
