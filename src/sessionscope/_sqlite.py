"""SQLite fixes every manager applies to its engine, borrowed ones included.

Real SAVEPOINTs with the ``sqlite3`` and ``aiosqlite`` drivers: in its legacy
transaction mode (the default before Python 3.16) ``sqlite3`` emits BEGIN only
before DML, never before SAVEPOINT: a released savepoint's rows then survive
the rollback of the enclosing transaction. SQLAlchemy's
documented recipe turns the driver's own BEGIN off (``isolation_level = None``)
and emits BEGIN itself from the ``begin`` event. We hand that BEGIN straight
to the ``sqlite3`` connection (SQLAlchemy already makes file connections
usable from any thread): a deferred BEGIN does no I/O, so the event loop's
thread may run it, and it then costs a microsecond instead of a full
SQLAlchemy execution or, with aiosqlite, three trips to the driver's thread.

Cancellation with ``aiosqlite``: a cancelled statement keeps running in the
driver's worker thread, holding the database lock, and SQLAlchemy's cleanup
(closing the connection) queues up behind it. Interrupting the statement when
SQLAlchemy handles the cancellation lets the cleanup, and the next writer, go
on at once.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import Connection, Engine, event
from sqlalchemy.engine import ExceptionContext

__all__ = ["prepare_sqlite"]

_DRIVERS = frozenset({"pysqlite", "aiosqlite"})


def _emit_begin(connection: Connection) -> None:
    # Private, but the only way to see an AUTOCOMMIT isolation level without a
    # round trip; in AUTOCOMMIT a BEGIN of ours would never be committed.
    if connection._is_autocommit_isolation():
        return
    raw = _sqlite3_connection(connection)
    if raw is not None:
        if getattr(raw, "autocommit", None) is False:
            return  # Python >= 3.12 PEP 249 mode: sqlite3 begins transactions itself.
        try:
            # Checked on every BEGIN, not once per connection: SQLAlchemy sets
            # isolation_level back to "" whenever it applies an isolation level.
            if raw.isolation_level is not None:
                raw.isolation_level = None
            # Straight to sqlite3: a deferred BEGIN does no I/O, and taking it
            # through SQLAlchemy's execution (and, with aiosqlite, three trips
            # to the driver's thread) would cost more than the unit of work.
            raw.execute("BEGIN")
            return
        except sqlite3.Error:
            pass  # e.g. a connection tied to its thread: SQLAlchemy's way reports it
    dbapi_connection = connection.connection.dbapi_connection
    if getattr(dbapi_connection, "autocommit", None) is False:
        return
    if dbapi_connection.isolation_level is not None:  # type: ignore[union-attr]
        dbapi_connection.isolation_level = None  # type: ignore[union-attr]
    connection.exec_driver_sql("BEGIN")


def _sqlite3_connection(connection: Connection) -> sqlite3.Connection | None:
    """The ``sqlite3`` connection under a pysqlite or aiosqlite connection."""
    driver_connection = connection.connection.driver_connection
    if isinstance(driver_connection, sqlite3.Connection):
        return driver_connection  # pysqlite
    # aiosqlite keeps it in ``_conn`` (a property since 0.22, raising once closed).
    try:
        raw = getattr(driver_connection, "_conn", None)
    except ValueError:
        return None
    return raw if isinstance(raw, sqlite3.Connection) else None


def _interrupt_cancelled_statement(context: ExceptionContext) -> None:
    if isinstance(context.original_exception, Exception) or context.connection is None:
        return  # an ordinary error: the statement has already ended
    # sqlite3's interrupt() is documented as safe to call from any thread.
    raw = _sqlite3_connection(context.connection)
    if raw is not None:
        raw.interrupt()


def prepare_sqlite(engine: Engine) -> None:
    """Install the fixes above on a (sync) SQLite engine, once."""
    if engine.dialect.name != "sqlite" or engine.dialect.driver not in _DRIVERS:
        return
    if not event.contains(engine, "begin", _emit_begin):
        event.listen(engine, "begin", _emit_begin)
    if engine.dialect.driver == "aiosqlite" and not event.contains(
        engine, "handle_error", _interrupt_cancelled_statement
    ):
        event.listen(engine, "handle_error", _interrupt_cancelled_statement)
