"""A scope's statement timeout, lock timeout and deadline on SQLite (§13).

SQLite has no server to stop a statement: a progress handler, which the
``sqlite3`` module calls every few hundred virtual-machine steps, stops it
once its time is up (SQLITE_INTERRUPT, "interrupted"), and a trace callback,
called as each statement starts, starts its clock. The lock timeout is the
connection's busy timeout (how long a statement waits for another
connection's lock before BUSY). Both belong to the connection, not to the
transaction: the pool's ``reset`` event, which fires whenever a connection
goes back to the pool, restores them (aiosqlite's abort watcher included, see
``_sqlite.py``), and the pool discards the connection if that fails.
"""

from __future__ import annotations

import math
import sqlite3
from time import monotonic
from typing import Any

from sqlalchemy import Connection, Engine

from ._settings import Setup, deadline_exceeded

__all__ = ["ABORT", "apply_limits", "restore_limits"]

# In a connection record's info: the busy timeout to restore (ms), and the clock.
_BUSY_TIMEOUT = "sessionscope_busy_timeout"
_CLOCK = "sessionscope_clock"
# In a connection record's info (aiosqlite): the Event of the abort watcher that
# _sqlite.py installs as the progress handler; ours checks it too.
ABORT = "sessionscope_abort"
_STEPS = 1000


class _Clock:
    """The progress handler: True (stop) once the running statement's time is up."""

    __slots__ = ("aborted", "deadline_at", "stop_at", "timeout")

    def __init__(self, aborted: Any) -> None:
        self.aborted = aborted
        self.timeout: float | None = None
        self.deadline_at: float | None = None
        self.stop_at = math.inf

    def started(self, statement: object) -> None:
        """The trace callback: a statement starts."""
        stop_at = math.inf if self.timeout is None else monotonic() + self.timeout
        if self.deadline_at is not None:
            stop_at = min(stop_at, self.deadline_at)
        self.stop_at = stop_at

    def __call__(self) -> bool:
        if self.aborted is not None and self.aborted.is_set():
            return True
        return monotonic() > self.stop_at


def apply_limits(
    connection: Connection, raw: sqlite3.Connection, setup: Setup | None, deadline_at: float | None
) -> None:
    """Give the connection a transaction's limits, as that transaction begins: the
    statement clock, and the busy timeout (also capped to the deadline: SQLite does
    not run the progress handler while it waits for a lock)."""
    info = connection.connection.info
    left = None if deadline_at is None else deadline_at - monotonic()
    if left is not None and left <= 0:
        raise deadline_exceeded("before the transaction began")
    if _CLOCK not in info and _BUSY_TIMEOUT not in info:
        restore_limits(connection.engine)  # once per engine, before any is changed
    timeout = None if setup is None else setup.statement_timeout
    clock = info.get(_CLOCK)
    if clock is None and (timeout is not None or deadline_at is not None):
        clock = info[_CLOCK] = _Clock(info.get(ABORT))
        raw.set_progress_handler(clock, _STEPS)
        raw.set_trace_callback(clock.started)
    if clock is not None:  # also to lift an earlier scope's, on a connection kept out (tests)
        clock.timeout = timeout
        clock.deadline_at = deadline_at
    lock_timeout = None if setup is None else setup.lock_timeout
    if left is not None:
        if lock_timeout is None:
            lock_timeout = info.get(_BUSY_TIMEOUT)
            if lock_timeout is None:
                lock_timeout = raw.execute("PRAGMA busy_timeout").fetchone()[0]
            lock_timeout = lock_timeout / 1000
        lock_timeout = min(lock_timeout, left)
    if lock_timeout is not None:
        if _BUSY_TIMEOUT not in info:
            info[_BUSY_TIMEOUT] = raw.execute("PRAGMA busy_timeout").fetchone()[0]
        raw.execute(f"PRAGMA busy_timeout = {max(1, math.ceil(lock_timeout * 1000))}")
    elif _BUSY_TIMEOUT in info:
        raw.execute(f"PRAGMA busy_timeout = {int(info.pop(_BUSY_TIMEOUT))}")


def _restore(dbapi_connection: Any, connection_record: Any, reset_state: Any) -> None:
    """The pool's ``reset`` listener: the connection goes back as it came."""
    info = connection_record.info
    clock = info.pop(_CLOCK, None)
    busy_timeout = info.pop(_BUSY_TIMEOUT, None)
    if (clock is None and busy_timeout is None) or reset_state.terminate_only:
        return
    raw = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    raw = raw if isinstance(raw, sqlite3.Connection) else getattr(raw, "_conn", None)
    if not isinstance(raw, sqlite3.Connection):
        raise sqlite3.ProgrammingError("the connection is closed")  # discarded
    if clock is not None:
        raw.set_trace_callback(None)
        if clock.aborted is not None:
            raw.set_progress_handler(clock.aborted.is_set, _STEPS)
        else:
            raw.set_progress_handler(None, 0)
    if busy_timeout is not None:
        raw.execute(f"PRAGMA busy_timeout = {int(busy_timeout)}")


def restore_limits(engine: Engine) -> None:
    """Make sure no connection goes back to ``engine``'s pool with a scope's limits:
    call before the first scope that has any."""
    from sqlalchemy import event

    if not event.contains(engine, "reset", _restore):
        event.listen(engine, "reset", _restore)
