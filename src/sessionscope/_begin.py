"""What every transaction of a scope starts with, wherever it starts.

A scope's first transaction starts when the scope gets its connection; when
its body ends one (``session.commit()``, ``rollback()``, ``close()``) and goes
on, the session starts the next one by itself at its next statement. Both
fire SQLAlchemy's ``after_begin`` event on the manager's sessions, so the
listener made here gives every transaction of a scope the same options: the
SQLite BEGIN that makes savepoints real, read-only mode, and the settings,
timeouts and deadline of ``_settings.py``. (The isolation
level comes with the connection: a scope that asks for one gets a session
bound to an engine that sets it on every connection it checks out.)

The listener finds the scope in the session's ``_sessionscope_scope``: the
innermost scope using the session, whose level says what its transaction is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine

from ._settings import postgres_start
from ._sqlite import begin_sqlite_transaction, prepare_sqlite

__all__ = ["begin_listener"]

BeginListener = Callable[[Any, Any, Connection], None]


def _begin_postgresql(session: Any, transaction: Any, connection: Connection) -> None:
    scope = session._sessionscope_scope
    if scope is None or transaction.nested:
        return
    level = scope.level
    # Transaction-local, all of it: nothing to undo when the connection goes back.
    if level.setup is None and level.deadline_at is None:
        # The fast path has no transaction: writes are refused by the server.
        if level.read_only and not level.fast:
            connection.exec_driver_sql("SET TRANSACTION READ ONLY")
        return
    start = postgres_start(
        level.setup, level.read_only, level.deadline_at, connection.dialect.paramstyle
    )
    if start is not None:
        isolation = scope.manager._isolation
        if isolation is not None:  # a test's: see Isolated.save_settings()
            isolation.save_settings(level, connection)
        connection.exec_driver_sql(*start)


def begin_listener(engine: Engine) -> BeginListener | None:
    """The ``after_begin`` listener for the manager's sessions on ``engine``; None where
    there is nothing to do, and so no read-only mode either."""
    if prepare_sqlite(engine):
        return begin_sqlite_transaction
    if engine.dialect.name == "postgresql":
        return _begin_postgresql
    return None
