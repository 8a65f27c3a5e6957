"""The read-only fast path: read-only scopes without BEGIN and COMMIT.

A read-only scope at READ COMMITTED (the server's default level) with no
settings, timeouts or deadline runs on a connection in autocommit mode: one
round trip per statement instead of BEGIN, SET TRANSACTION READ ONLY, the
statements and COMMIT. What it reads is the same: at READ COMMITTED,
PostgreSQL takes a new snapshot for every statement inside a transaction too.
Writes are still refused, by the server: a replica refuses every write, and
on the primary the scope gets a connection of a second engine whose
connections are opened with ``default_transaction_read_only=on`` (a startup
parameter: nothing to undo, nothing that can leak to the pool).

PgBouncer refuses startup parameters, and a session-level ``SET`` would reach
its other clients: behind it, the primary's read-only scopes keep a real
``READ ONLY`` transaction (the first refused connection turns the primary's
fast path off), and the fast path serves replicas only. Neither is there a
fast path on an engine the application passed in (the manager cannot make a
second one like it), nor on SQLite, whose BEGIN costs no round trip.

Inside it there is no transaction: a ``nested`` scope has nothing to
savepoint (nothing was written, so there is nothing to roll back either) and
the body's own ``session.begin_nested()`` is refused by the server.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import URL

__all__ = ["read_only_engine"]

_READ_ONLY = "default_transaction_read_only"


def read_only_engine(
    create_engine: Callable[..., Any], url: URL, engine_options: Mapping[str, Any]
) -> Any:
    """An engine of the primary at ``url`` whose connections refuse writes by default,
    or None for a driver whose startup parameters are not known here."""
    driver = url.get_dialect().driver
    connect_args = dict(engine_options.get("connect_args") or {})
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
    if url.query.get("target_session_attrs") == "read-write":
        # A server that refuses writes by default is never "read-write" to libpq or
        # asyncpg; "primary" asks only that it is not in recovery.
        url = url.update_query_dict({"target_session_attrs": "primary"})
    return create_engine(url, **{**engine_options, "connect_args": connect_args})
