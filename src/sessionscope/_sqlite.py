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

Read-only scopes set ``PRAGMA query_only``, which belongs to the connection,
not to the transaction: the pool's ``reset`` event, which fires whenever a
connection goes back to the pool, whoever returns it and however, turns it
off again (or the pool discards the connection if that fails). A ``reset``
listener costs every transaction about 3 µs here, so it is installed with
the engine's first read-only scope, before that scope begins.

Cancellation with ``aiosqlite``: a cancelled statement keeps running in the
driver's worker thread, and SQLAlchemy then drops the connection without a
ROLLBACK. ``sqlite3`` closes a connection that still has prepared statements
only once they are garbage-collected, keeping its transaction, and the
database's write lock, until then. So when SQLAlchemy invalidates such a
connection we stop its statement (``interrupt()`` for one that runs, a
progress handler for one still queued in the worker) and roll back at once:
the next writer goes on immediately. These are pool events, which cost
nothing per statement.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import Any

from sqlalchemy import Connection, Engine, event

from ._sqlite_limits import ABORT as _ABORT
from ._sqlite_limits import apply_limits

__all__ = [
    "begin_connection",
    "begin_sqlite_transaction",
    "prepare_sqlite",
    "restore_query_only",
]

_DRIVERS = frozenset({"pysqlite", "aiosqlite"})

# In a connection record's info: the connection is in query_only mode because of us.
_QUERY_ONLY = "sessionscope_query_only"
# VM instructions between two calls of the progress handler: rare enough to cost
# nothing measurable, often enough to stop a statement within microseconds.
_PROGRESS_STEPS = 1000


def begin_sqlite_transaction(session: Any, transaction: Any, connection: Connection) -> None:
    """The ``after_begin`` listener of the manager's sessions: make a new transaction a
    real one (BEGIN), read-only if its scope is. (One function: every transaction.)"""
    if transaction.nested:
        return  # a SAVEPOINT's after_begin: its transaction has begun
    raw = connection.connection.driver_connection
    if type(raw) is not sqlite3.Connection:  # aiosqlite (pysqlite's is the sqlite3 one)
        raw = _sqlite3_connection(raw)
        if raw is None:
            return  # closed under us: the statement that follows reports it
    # Private, but the only way to see an AUTOCOMMIT isolation level without a
    # round trip; in AUTOCOMMIT a BEGIN of ours would never be committed. Already
    # in a transaction: a session joining a connection's transaction (with Python
    # >= 3.12's autocommit=False, sqlite3 keeps one open itself).
    scope = session._sessionscope_scope
    level = None if scope is None else scope.level
    setup = None if level is None else level.setup
    if level is not None and (
        level.deadline_at is not None
        or (setup is not None and setup.has_limits)
        # In a test's isolation the connection stays out: lift an earlier scope's.
        or scope.manager._isolation is not None
    ):
        # Before BEGIN: BEGIN IMMEDIATE waits for the lock as long as they say.
        apply_limits(connection, raw, setup, level.deadline_at)
    if not raw.in_transaction and not connection._is_autocommit_isolation():
        if setup is not None and setup.sqlite_begin == "immediate" and not scope.level.read_only:
            # May wait for another writer (the busy timeout): in the driver's thread.
            _run_in_driver_thread(connection, "BEGIN IMMEDIATE")
        else:
            try:
                raw.execute("BEGIN")
            except sqlite3.ProgrammingError:
                _run_in_driver_thread(connection, "BEGIN")
    if level is not None and level.read_only:
        try:
            raw.execute("PRAGMA query_only = ON")
        except sqlite3.ProgrammingError:
            _run_in_driver_thread(connection, "PRAGMA query_only = ON")
        connection.connection.info[_QUERY_ONLY] = True


def begin_connection(connection: Connection) -> None:
    """A real BEGIN now, on a SQLite connection whose transaction SQLAlchemy began: the
    driver defers BEGIN to the first write, and a SAVEPOINT would otherwise start the
    transaction, which SQLite then commits when that savepoint is released."""
    if connection.dialect.name != "sqlite":
        return
    raw = _sqlite3_connection(connection.connection.driver_connection)
    if raw is not None and not raw.in_transaction:
        connection.exec_driver_sql("BEGIN")


def _run_in_driver_thread(connection: Connection, sql: str) -> None:
    # A connection created with check_same_thread=True, used from the event
    # loop's thread: let SQLAlchemy take the statement to the driver's thread.
    connection.exec_driver_sql(sql)


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


def _driver_connection(dbapi_connection: Any) -> Any:
    return getattr(dbapi_connection, "driver_connection", dbapi_connection)


def _undo_query_only(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
    """The pool's ``reset`` listener: no connection goes back read-only. An error
    here makes the pool discard the connection instead."""
    if not connection_record.info.pop(_QUERY_ONLY, False) or reset_state.terminate_only:
        return
    raw = _sqlite3_connection(_driver_connection(dbapi_connection))
    try:
        if raw is None:
            raise sqlite3.ProgrammingError("the connection is closed")
        raw.execute("PRAGMA query_only = OFF")
    except sqlite3.ProgrammingError:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("PRAGMA query_only = OFF")
        finally:
            cursor.close()


def _watch_for_aborts(dbapi_connection: Any, connection_record: Any) -> None:
    """The pool's ``connect`` listener (aiosqlite): a progress handler that stops any
    statement of the connection once it has been invalidated."""
    raw = _sqlite3_connection(_driver_connection(dbapi_connection))
    if raw is None:
        return
    aborted = threading.Event()
    try:
        raw.set_progress_handler(aborted.is_set, _PROGRESS_STEPS)
    except sqlite3.ProgrammingError:
        return  # tied to the driver's thread: interrupt() alone will have to do
    connection_record.info[_ABORT] = aborted


def _end_cancelled_statement(
    dbapi_connection: Any, connection_record: Any, exception: BaseException | None
) -> None:
    """The pool's ``invalidate`` listener (aiosqlite): stop the connection's statement
    and end its transaction now, not when the garbage collector gets to it."""
    if exception is None or isinstance(exception, Exception):
        return  # an ordinary error: the statement has already ended
    raw = _sqlite3_connection(_driver_connection(dbapi_connection))
    if raw is None:
        return
    aborted = connection_record.info.get(_ABORT)
    if aborted is not None:
        aborted.set()  # a statement still queued in the worker stops at its first steps
    raw.interrupt()  # documented as safe to call from any thread
    try:
        if raw.in_transaction:
            # Waits (the connection is serialized) for the interrupted statement
            # to return: milliseconds.
            raw.rollback()
    except sqlite3.Error:
        pass  # closed meanwhile, or tied to its thread: the close that follows ends it


def prepare_sqlite(engine: Engine) -> bool:
    """Install the engine's part of the fixes above, once; True if the manager's
    sessions must call :func:`begin_sqlite_transaction` as their transactions begin."""
    if engine.dialect.name != "sqlite" or engine.dialect.driver not in _DRIVERS:
        return False
    if engine.dialect.driver == "aiosqlite":
        _listen(engine, "connect", _watch_for_aborts)
        _listen(engine, "invalidate", _end_cancelled_statement)
    return True


def restore_query_only(engine: Engine) -> None:
    """Make sure no connection goes back to ``engine``'s pool in query_only mode: call
    before the first read-only scope."""
    _listen(engine, "reset", _undo_query_only)


def _listen(engine: Engine, name: str, listener: Any) -> None:
    if not event.contains(engine, name, listener):  # engines can be shared by managers
        event.listen(engine, name, listener)
