"""What each SQLAlchemy variant of an e2e group asks of the pool and sends to the server.

Counted after the timing (the listeners would slow every statement of the
engine), over a few units per variant: statements sent through SQLAlchemy's
cursor (``before_cursor_execute``: BEGIN on SQLite, the SELECT, the UPDATE,
anything a library adds), COMMITs and ROLLBACKs of the connection, pool
checkouts and the resets on return. Equal figures for every variant mean the
difference in time is code on the client, not a round trip or a pool trip.
(psycopg and asyncpg send BEGIN themselves, with the first statement, and the
BEGIN that makes SQLite's transactions real goes straight to the driver
(sessionscope/_sqlite.py): neither is counted, for any variant.)
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy.ext.asyncio import AsyncEngine

from .harness import Variant, format_table

__all__ = ["Wire", "count_sync", "count_async"]

UNITS = 20
_EVENTS = {
    "statements": (False, "before_cursor_execute"),
    "commits": (False, "commit"),
    "rollbacks": (False, "rollback"),
    "checkouts": (True, "checkout"),
    "resets": (True, "reset"),
}


@dataclasses.dataclass
class Wire:
    """Per variant, per unit of work: what was counted."""

    per_unit: dict[str, dict[str, float]]

    def table(self, labels: dict[str, str]) -> str:
        rows = [
            [labels.get(key, key), *(f"{counts[name]:g}" for name in _EVENTS)]
            for key, counts in self.per_unit.items()
        ]
        return format_table(["per unit of work", *_EVENTS], rows)

    @property
    def identical(self) -> bool:
        return len({tuple(c.values()) for c in self.per_unit.values()}) <= 1


class _Counter:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.counts: collections.Counter[str] = collections.Counter()
        self._listeners = []
        for name, (on_pool, event_name) in _EVENTS.items():
            target = engine.pool if on_pool else engine
            listener = self._bump(name)
            event.listen(target, event_name, listener)
            self._listeners.append((target, event_name, listener))

    def _bump(self, name: str) -> Any:
        def bump(*args: Any, **kwargs: Any) -> None:
            self.counts[name] += 1

        return bump

    def take(self, units: int) -> dict[str, float]:
        taken = {name: self.counts[name] / units for name in _EVENTS}
        self.counts.clear()
        return taken

    def remove(self) -> None:
        for target, name, listener in self._listeners:
            event.remove(target, name, listener)


def count_sync(engine: Engine, variants: Sequence[Variant[Any]], keys: Sequence[int]) -> Wire:
    counter = _Counter(engine)
    try:
        per_unit = {}
        for variant in variants:
            variant.run(keys)
            per_unit[variant.key] = counter.take(len(keys))
        return Wire(per_unit)
    finally:
        counter.remove()


async def count_async(
    engine: AsyncEngine, variants: Sequence[Variant[Any]], keys: Sequence[int]
) -> Wire:
    counter = _Counter(engine.sync_engine)
    try:
        per_unit = {}
        for variant in variants:
            await variant.run(keys)
            await asyncio.sleep(0)
            per_unit[variant.key] = counter.take(len(keys))
        return Wire(per_unit)
    finally:
        counter.remove()
