"""The read-only fast path (``SessionConfig.read_only_fast_path``, opt-in): read-only
scopes without BEGIN and COMMIT.

A read-only scope at READ COMMITTED (the level every connection gets) with no
settings, timeouts or deadline runs on a connection in autocommit mode: one
round trip per statement instead of BEGIN, SET TRANSACTION READ ONLY, the
statements and COMMIT. What the statements read is the same: at READ
COMMITTED, PostgreSQL takes a new snapshot for every statement inside a
transaction too. Writes are still refused, by the server: a replica refuses
every write, and on the primary the scope gets a connection of a second
engine whose connections are opened with ``default_transaction_read_only=on``
(a startup parameter: nothing to undo, nothing that can leak to the pool),
checked as each one opens.

What it changes, and why it is opt-in: there is no transaction, so what the
application sets for one (``SET LOCAL``, ``set_config(..., true)``, in the body
or an ``after_begin`` listener) lasts one statement; server-side cursors
(``session.stream()``, ``yield_per``) need a transaction and fail; the body's
own ``session.begin_nested()`` is refused (a ``nested`` scope has nothing to
savepoint, and nothing to roll back: it wrote nothing).

The primary's second engine is made from the manager's URL and engine options,
so there is none for an engine the application passed in, nor with its own
way to connect (``creator``, ``async_creator``, ``pool``), nor with a failover
URL (``target_session_attrs``: ``read-write`` refuses a session read-only by
default, ``primary`` would take a fenced old primary too). PgBouncer refuses
startup parameters, and a session-level ``SET`` would reach its other clients:
behind it, the first refused (or unchecked) connection turns the primary's
fast path off for good, and read-only scopes there keep a real ``READ ONLY``
transaction. Replicas have the fast path in all these cases. SQLite has none:
its BEGIN costs no round trip.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import URL, event

from .errors import SessionScopeError

__all__ = ["WritesNotRefused", "read_only_engine"]

_READ_ONLY = "default_transaction_read_only"
# Engine options under which the manager cannot make a second engine that is sure to
# reach the same server with the startup parameter: the application's own ways to
# connect.
_OWN_WAYS = ("creator", "async_creator", "pool")


class WritesNotRefused(SessionScopeError):
    """A connection of the primary's read-only engine would take writes (the startup
    parameter did not reach the server: a pooler that ignores it, say), or does not
    run at READ COMMITTED."""


def read_only_engine(
    create_engine: Callable[..., Any], url: URL, engine_options: Mapping[str, Any]
) -> Any:
    """An engine of the primary at ``url`` whose connections refuse writes by default,
    or None where the fast path cannot have one (see the module's docstring)."""
    driver = url.get_dialect().driver
    connect_args = dict(engine_options.get("connect_args") or {})
    if any(name in engine_options for name in _OWN_WAYS):
        return None
    if "target_session_attrs" in url.query or "target_session_attrs" in connect_args:
        # A failover URL: "read-write" would refuse a session that is read-only by
        # default, and "primary" would also take a fenced old primary.
        return None
    if driver == "asyncpg":
        settings = dict(connect_args.get("server_settings") or {})
        settings[_READ_ONLY] = "on"
        connect_args["server_settings"] = settings
    elif driver in ("psycopg", "psycopg2"):
        given = connect_args.get("options", url.query.get("options", ""))
        if not isinstance(given, str):
            return None
        connect_args["options"] = f"{given} -c {_READ_ONLY}=on".strip()
    else:
        return None
    engine = create_engine(url, **{**engine_options, "connect_args": connect_args})
    sync_engine = getattr(engine, "sync_engine", engine)
    event.listen(sync_engine, "connect", _refuses_writes)
    return engine


def _refuses_writes(dbapi_connection: Any, connection_record: Any) -> None:
    """Every new connection of the read-only engine, before its first use."""
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute(
            "SELECT current_setting('default_transaction_read_only'),"
            " current_setting('default_transaction_isolation')"
        )
        row = cursor.fetchone()
    finally:
        cursor.close()
        dbapi_connection.rollback()  # the driver began a transaction for it
    if row is None or row[0] != "on":
        raise WritesNotRefused(
            "the primary's read-only engine got a connection that takes writes "
            "(default_transaction_read_only is not on: a pooler ignored the startup "
            "parameter?)"
        )
    if row[1] != "read committed":
        raise WritesNotRefused(
            f"the primary's connections run at {row[1]}, not READ COMMITTED: a statement "
            "per transaction would not read what one transaction does"
        )
