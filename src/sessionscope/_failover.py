"""A primary that stopped taking writes is a lost connection, not a bad statement.

In a failover the old primary is stopped (its connections break: connection
errors, ``57P01``) or fenced first: a failover manager sets
``default_transaction_read_only`` on it, or it comes back as a standby. Then
the pooled connections still open to it get ``25006`` (read-only SQL
transaction) for every write, which by itself says "your statement is wrong"
and would never be retried. On the manager's primary engine this listener
tells the two apart by what the server reported on that connection
(PostgreSQL 14 and later report ``in_hot_standby`` and
``default_transaction_read_only`` as they change): a server that refuses
writes by default, when it took them as the connection opened, is treated
as a disconnect. SQLAlchemy then invalidates
the pool, the error is connection-class (retried when COMMIT had not been
sent), and new connections made with ``target_session_attrs=read-write`` find
the new primary. A write in a scope that asked for read-only itself, on a
server that takes writes, stays what it is. Replicas' engines do not get it:
on them every write is refused, as it should be.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.engine import ExceptionContext

from ._transient import sqlstate_of

__all__ = ["watch_for_demotion"]

_READ_ONLY_SQL_TRANSACTION = "25006"
_PARAMETERS = ("in_hot_standby", "default_transaction_read_only")
_TOOK_WRITES = "sessionscope_took_writes"  # in the pooled connection's info


def server_refuses_writes(dbapi_connection: Any) -> bool:
    """Whether the server of this connection said it takes no writes by default."""
    driver = getattr(dbapi_connection, "driver_connection", dbapi_connection)
    info = getattr(driver, "info", None)
    if info is not None and hasattr(info, "parameter_status"):  # psycopg
        return any(info.parameter_status(name) == "on" for name in _PARAMETERS)
    get_settings = getattr(driver, "get_settings", None)
    if get_settings is not None:  # asyncpg
        settings = get_settings()
        return any(getattr(settings, name, None) == "on" for name in _PARAMETERS)
    return False


def _on_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # A server read-only from the start (a standby, a role or database that is
    # read-only by default) was never a primary to this connection: its 25006 is
    # the statement's.
    connection_record.info[_TOOK_WRITES] = not server_refuses_writes(dbapi_connection)


def _on_error(context: ExceptionContext) -> None:
    if context.is_disconnect or context.connection is None:
        return
    if sqlstate_of(context.original_exception) != _READ_ONLY_SQL_TRANSACTION:
        return
    try:
        took_writes = context.connection.info.get(_TOOK_WRITES, False)
        dbapi_connection = context.connection.connection.dbapi_connection
    except Exception:  # already invalidated or closed: nothing to ask
        return
    if took_writes and dbapi_connection is not None and server_refuses_writes(dbapi_connection):
        context.is_disconnect = True


def watch_for_demotion(engine: Engine) -> None:
    """Listen on a PostgreSQL primary's engine (once)."""
    if engine.dialect.name != "postgresql":
        return
    if not event.contains(engine, "handle_error", _on_error):
        event.listen(engine, "connect", _on_connect)
        event.listen(engine, "handle_error", _on_error)
