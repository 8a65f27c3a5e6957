# Generated from src/sessionscope/_async/routing.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""What awaits in choosing a replica: asking one how far it has replayed.

The bookkeeping, and the rules of the choice, are in ``_replicas.py``.
"""

from __future__ import annotations

from time import monotonic

from sqlalchemy import text

from .._replicas import LAG_QUERY, Replica, ReplicaSet
from .._sync_compat import Engine, sleep

__all__ = ["ask_replica", "commit_token"]

_LAG_QUERY = text(LAG_QUERY)
_TOKEN_QUERY = text("SELECT pg_current_wal_insert_lsn()::text")
# How often a scope waiting for its token asks again, at most.
_POLL = 0.05


def ask_replica(
    replicas: ReplicaSet, replica: Replica, token: int | None, wait_until: float
) -> bool:
    """Learn the replica's lag and replayed WAL position, on a connection of its own
    before the scope's transaction starts (whose snapshot must come after the token);
    True if the scope may run on it: lag within bounds, ``token`` replayed (waiting for
    it until ``wait_until``). Connection errors go to the caller."""
    with replica.engine.connect() as connection:
        delay = 0.005
        while True:
            row = (connection.execute(_LAG_QUERY)).one()
            connection.rollback()
            replicas.learned(replica, monotonic(), row[0], row[1], row[2])
            if not replicas.fit(replica):
                return False
            if token is None or replica.replayed >= token:
                return True
            left = wait_until - monotonic()
            if left <= 0:
                return False
            sleep(min(delay, left))
            delay = min(delay * 2, _POLL)


def commit_token(engine: Engine) -> str:
    """The primary's WAL position after every commit finished so far."""
    with engine.connect() as connection:
        value = (connection.execute(_TOKEN_QUERY)).scalar_one()
    return str(value)
