"""What awaits in choosing a replica: asking one how far it has replayed.

The bookkeeping, and the rules of the choice, are in ``_replicas.py``.
"""

from __future__ import annotations

from time import monotonic

from sqlalchemy import text

from .._async_compat import AsyncEngine, sleep
from .._replicas import LAG_QUERY, Replica, ReplicaSet

__all__ = ["ask_replica", "commit_token"]

_LAG_QUERY = text(LAG_QUERY)
_TOKEN_QUERY = text("SELECT pg_current_wal_insert_lsn()::text")
# How often a scope waiting for its token asks again, at most.
_POLL = 0.05


async def ask_replica(
    replicas: ReplicaSet, replica: Replica, token: int | None, wait_until: float
) -> bool:
    """Learn the replica's lag and replayed WAL position, on a connection of its own
    before the scope's transaction starts (whose snapshot must come after the token);
    True if the scope may run on it: lag within bounds, ``token`` replayed (waiting for
    it until ``wait_until``). Connection errors go to the caller."""
    async with replica.engine.connect() as connection:
        delay = 0.005
        while True:
            row = (await connection.execute(_LAG_QUERY)).one()
            await connection.rollback()
            replicas.learned(replica, monotonic(), row[0], row[1], row[2])
            if not replicas.fit(replica):
                return False
            if token is None or replica.replayed >= token:
                return True
            left = wait_until - monotonic()
            if left <= 0:
                return False
            await sleep(min(delay, left))
            delay = min(delay * 2, _POLL)


async def commit_token(engine: AsyncEngine) -> str:
    """The primary's WAL position after every commit finished so far."""
    async with engine.connect() as connection:
        value = (await connection.execute(_TOKEN_QUERY)).scalar_one()
    return str(value)
