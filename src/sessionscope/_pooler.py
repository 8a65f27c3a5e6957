"""PgBouncer: how to tell it is there, and what a driver needs behind it.

PgBouncer in transaction mode gives each transaction of a client whichever
server connection is free. What a driver keeps on its server connection
between transactions then reaches other clients, or is missing when it is
used again: prepared statements above all. SQLAlchemy documents the driver
options that avoid them (``PGBOUNCER_CONNECT_ARGS``). Settings are safe as
sessionscope sets them: ``set_config(..., true)`` is transaction-local.

PgBouncer also refuses the startup parameters it does not know
(``unsupported startup parameter``): that is how it is recognised, and why
the read-only fast path cannot open read-only connections through it.
"""

from __future__ import annotations

import uuid
from typing import Any

__all__ = [
    "PGBOUNCER_CONNECT_ARGS",
    "PROBE_CONNECT_ARGS",
    "pgbouncer_connect_args",
    "refused_startup_parameter",
]

# Shown, not used: the user's engine needs them (asyncpg's name function must give
# names no other client uses, e.g. lambda: f"__asyncpg_{uuid.uuid4()}__").
PGBOUNCER_CONNECT_ARGS: dict[str, str] = {
    "psycopg": "connect_args={'prepare_threshold': None}",
    "asyncpg": (
        "connect_args={'statement_cache_size': 0, 'prepared_statement_cache_size': 0, "
        "'prepared_statement_name_func': lambda: f'__asyncpg_{uuid.uuid4()}__'}"
    ),
}


def pgbouncer_connect_args(driver: str) -> dict[str, Any]:
    """The ``connect_args`` of ``PGBOUNCER_CONNECT_ARGS``, for an engine of ``driver``."""
    if driver == "asyncpg":
        return {
            "statement_cache_size": 0,
            "prepared_statement_cache_size": 0,
            "prepared_statement_name_func": lambda: f"__asyncpg_{uuid.uuid4()}__",
        }
    if driver == "psycopg":
        return {"prepare_threshold": None}
    return {}


# A startup parameter PostgreSQL takes and PgBouncer refuses, per driver.
PROBE_CONNECT_ARGS: dict[str, dict[str, Any]] = {
    "psycopg": {"options": "-c statement_timeout=0"},
    "asyncpg": {"server_settings": {"statement_timeout": "0"}},
}


def refused_startup_parameter(error: BaseException) -> bool:
    """Whether ``error`` is PgBouncer refusing a startup parameter."""
    current: BaseException | None = error
    for _ in range(8):
        if current is None:
            return False
        if "unsupported startup parameter" in str(current):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False
