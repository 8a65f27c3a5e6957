"""Flavour-free test support: the database under test and an independent observer.

The observer reads the database through its own plain sync engine (NullPool,
so it never keeps a connection), never through the code under test: what it
sees is what was really committed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, func, select, text
from sqlalchemy.pool import NullPool

from sessionscope._pooler import pgbouncer_connect_args
from tests.models import Base, User

SYNC_DRIVER = {"sqlite": "sqlite", "psycopg": "postgresql+psycopg", "asyncpg": "postgresql+psycopg"}
ASYNC_DRIVER = {
    "sqlite": "sqlite+aiosqlite",
    "psycopg": "postgresql+psycopg",
    "asyncpg": "postgresql+asyncpg",
}


# Backends that reach PostgreSQL through PgBouncer in transaction mode: "<driver>-pgbouncer".
PGBOUNCER_SUFFIX = "-pgbouncer"


class Database:
    """One test's database: where it lives and what is really in it.

    ``engine_options`` are what a manager of ``url`` must be given (the driver's
    settings for PgBouncer); the observer always reads the server directly."""

    def __init__(
        self, backend: str, is_async: bool, tmp_path: Path, pg_server: Any, pg_bouncer: Any = None
    ) -> None:
        self.backend = backend
        self.is_postgres = pg_server is not None
        self.pg_server = pg_server
        self.engine_options: dict[str, Any] = {}
        drivers = ASYNC_DRIVER if is_async else SYNC_DRIVER
        driver_name = backend.removesuffix(PGBOUNCER_SUFFIX)
        if pg_server is None:
            location = "/%s" % (tmp_path / "test.db")
            self.url = drivers[backend] + "://" + location
            self.observer_url = "sqlite://" + location
        else:
            rest = pg_server.url("psycopg").split("://", 1)[1]
            self.url = drivers[driver_name] + "://" + rest
            self.observer_url = "postgresql+psycopg://" + rest
        if backend.endswith(PGBOUNCER_SUFFIX):
            assert pg_bouncer is not None
            self.url = pg_bouncer.url(pg_server.dbname, drivers[driver_name].split("+")[1])
            # As SQLAlchemy documents it (and `python -m sessionscope check` says).
            self.engine_options = {"connect_args": pgbouncer_connect_args(driver_name)}
        self.observer: Engine = create_engine(self.observer_url, poolclass=NullPool)

    def url_of(self, server: Any) -> str:
        """This database's URL, with this test's driver, on another server (a replica)."""
        driver = self.url.split("://", 1)[0].split("+", 1)[1]
        return str(server.url(driver))

    def wait_replayed(self, replica: Any) -> None:
        """Wait until ``replica`` has replayed every commit made so far."""
        replica.wait_replayed(self.pg_server.current_lsn())

    def reset_schema(self) -> None:
        with self.observer.begin() as connection:
            Base.metadata.drop_all(connection)
            Base.metadata.create_all(connection)

    def count(self, table: Any = User) -> int:
        with self.observer.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(table)).scalar_one())

    def names(self) -> list[str]:
        with self.observer.connect() as connection:
            return sorted(connection.execute(select(User.name)).scalars())

    def scalar(self, sql: str) -> Any:
        with self.observer.connect() as connection:
            return connection.execute(text(sql)).scalar()

    def idle_in_transaction(self) -> int:
        return 0 if self.pg_server is None else int(self.pg_server.idle_in_transaction_count())

    def close(self) -> None:
        self.observer.dispose()


def enable_sqlite_foreign_keys(dbapi_connection: Any, connection_record: Any) -> None:
    """A "connect" listener: SQLite enforces foreign keys only where they are turned on."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def plain_function(session: Any) -> None:
    """A sync function: the wrong flavour for the async decorator."""


async def coroutine_function(session: Any) -> None:
    """A coroutine function: the wrong flavour for the sync decorator."""


def generator_function(session: Any) -> Any:
    """A generator function: refused by both decorators."""
    yield session


async def async_generator_function(session: Any) -> Any:
    """An async generator function: refused by both decorators."""
    yield session


def engine_of_the_other_flavour(database: Database, is_async: bool) -> Any:
    """An engine on the same database, of the flavour the code under test is not."""
    rest = "://" + database.url.split("://", 1)[1]
    backend = database.backend.removesuffix(PGBOUNCER_SUFFIX)
    if is_async:
        return create_engine(SYNC_DRIVER[backend] + rest)
    from sqlalchemy.ext import asyncio as sqlalchemy_asyncio

    return sqlalchemy_asyncio.create_async_engine(ASYNC_DRIVER[backend] + rest)
