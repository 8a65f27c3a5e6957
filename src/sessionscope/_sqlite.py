"""SQLite fixes every manager applies, on engines and sessionmakers it borrows too.

Real SAVEPOINTs with the ``sqlite3`` and ``aiosqlite`` drivers: in its legacy
transaction mode (the default before Python 3.16) ``sqlite3`` emits BEGIN only
before DML, never before SELECT or SAVEPOINT: a released savepoint's rows then
survive the rollback of the enclosing transaction, and a read-then-write is
not one transaction. SQLAlchemy's documented recipe emits BEGIN itself from
the engine's ``begin`` event; we emit it from the ``after_begin`` event of
the manager's sessions instead, for two reasons of speed:

- any engine-level event listener switches SQLAlchemy's statement execution
  to a slower path for every statement of every connection of the engine
  (about 15 µs per transaction measured here); session events cost nothing
  until they fire;
- the BEGIN goes straight to the ``sqlite3`` connection. A deferred BEGIN does
  no I/O, so the event loop's thread may run it (SQLAlchemy makes file
  connections usable from any thread): a microsecond, instead of a full
  SQLAlchemy execution or, with aiosqlite, three trips to the driver's thread.
  A connection tied to its thread falls back to SQLAlchemy's execution.

``sqlite3`` keeps its own mode: having seen our BEGIN it emits none of its
own, and connections other code takes from the same pool behave as before.

Cancellation with ``aiosqlite``: a cancelled statement keeps running in the
driver's worker thread, holding the database lock, and SQLAlchemy's cleanup
(closing the connection) queues up behind it. Interrupting the statement when
SQLAlchemy invalidates the connection lets the cleanup, and the next writer,
go on at once. That is a pool event, which costs nothing per statement.
"""

from __future__ import annotations

import sqlite3
from typing import Any

from sqlalchemy import Connection, Engine, event

__all__ = ["emit_begin", "prepare_sqlite"]

_DRIVERS = frozenset({"pysqlite", "aiosqlite"})


def emit_begin(session: Any, transaction: Any, connection: Connection) -> None:
    """The sessions' ``after_begin`` listener: make the transaction a real one."""
    # Private, but the only way to see an AUTOCOMMIT isolation level without a
    # round trip; in AUTOCOMMIT a BEGIN of ours would never be committed.
    if connection._is_autocommit_isolation():
        return
    raw = connection.connection.driver_connection
    if type(raw) is not sqlite3.Connection:  # aiosqlite (pysqlite's is the sqlite3 one)
        raw = _sqlite3_connection(raw)
        if raw is None:
            return  # closed under us: the statement that follows reports it
    # Already in one: a SAVEPOINT's after_begin, or a session joining a
    # connection's transaction. (With Python >= 3.12's autocommit=False, sqlite3
    # keeps a transaction open itself, so this is true there too.)
    if raw.in_transaction:
        return
    try:
        raw.execute("BEGIN")
    except sqlite3.ProgrammingError:
        # A connection created with check_same_thread=True, used from the
        # event loop's thread: let SQLAlchemy take the BEGIN to the driver's thread.
        connection.exec_driver_sql("BEGIN")


def _sqlite3_connection(driver_connection: Any) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection of a pysqlite or aiosqlite driver connection."""
    if isinstance(driver_connection, sqlite3.Connection):
        return driver_connection  # pysqlite
    # aiosqlite keeps it in ``_conn`` (a property since 0.22, raising once closed).
    try:
        raw = getattr(driver_connection, "_conn", None)
    except ValueError:
        return None
    return raw if isinstance(raw, sqlite3.Connection) else None


def _interrupt_cancelled_statement(
    dbapi_connection: Any, connection_record: Any, exception: BaseException | None
) -> None:
    if exception is None or isinstance(exception, Exception):
        return  # an ordinary error: the statement has already ended
    driver_connection = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    raw = _sqlite3_connection(driver_connection)
    if raw is not None:
        raw.interrupt()  # documented as safe to call from any thread


def prepare_sqlite(engine: Engine) -> bool:
    """Install the engine's part of the fixes above, once; True if the manager's
    sessions need ``emit_begin`` as their ``after_begin`` listener."""
    if engine.dialect.name != "sqlite" or engine.dialect.driver not in _DRIVERS:
        return False
    if engine.dialect.driver == "aiosqlite" and not event.contains(
        engine, "invalidate", _interrupt_cancelled_statement
    ):
        event.listen(engine, "invalidate", _interrupt_cancelled_statement)
    return True
