"""Section "latency", second part: the read-only fast path at a network's round-trip time.

PostgreSQL behind a loopback proxy that adds ``rtt`` (1 ms by default) to every
round trip, as a database on another machine has. One unit is one scope that
reads one row by primary key, per variant:

- raw           SQLAlchemy ``with engine.begin() as conn:`` (BEGIN, SELECT, COMMIT);
- transaction   ``session_scope(read_only=True, isolation_level="READ COMMITTED")``:
                a real READ ONLY transaction, as without the fast path;
- fast path     ``session_scope(read_only=True)`` with ``read_only_fast_path=True``:
                the SELECT alone.

Sync (psycopg) and async (asyncpg), interleaved rounds, µs per scope (median),
as multiples of the fast path.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Sequence
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import create_async_engine

from sessionscope import AsyncSessionManager, SessionConfig, SessionManager

from .harness import Series, Variant, paired_ratio, run_interleaved, run_interleaved_async
from .latency_proxy import LatencyProxy

__all__ = ["FastRead", "round_trip", "run_fast_read"]

READ = text("SELECT id, name FROM bench_fast_read WHERE id = :id")
CONFIG = SessionConfig(enable_monitoring=True, log_level="WARNING", read_only_fast_path=True)


@dataclasses.dataclass
class FastRead:
    rtt_ms: float  # as measured through the proxy
    series: dict[str, dict[str, Series]]  # flavour -> variant -> series

    def report(self) -> str:
        lines = [f"  round trip through the proxy: {self.rtt_ms:.2f} ms (SELECT 1, autocommit)"]
        for flavour, series in self.series.items():
            fast = series["fast"]
            lines.append(
                f"  {flavour}: µs per read-only scope (median), as a multiple of fast path"
            )
            for one in series.values():
                ratio = paired_ratio(one, fast)
                lines.append(
                    f"    {one.label:<52} {one.median:9.0f} µs   {ratio:5.2f}x"
                    f"   spread {one.spread:.0%}"
                )
        return "\n".join(lines)

    def speed_up(self, flavour: str) -> float:
        """Raw ``engine.begin()`` over the fast path (paired), in ``flavour``."""
        series = self.series[flavour]
        return paired_ratio(series["raw"], series["fast"])

    def as_json(self) -> dict[str, Any]:
        return {
            "rtt_ms": self.rtt_ms,
            **{f: {k: s.as_json() for k, s in v.items()} for f, v in self.series.items()},
        }


def run_fast_read(server: Any, *, rtt: float, rounds: int, scopes: int) -> FastRead:
    with create_engine(server.url("psycopg")).begin() as connection:
        connection.execute(text("DROP TABLE IF EXISTS bench_fast_read"))
        connection.execute(text("CREATE TABLE bench_fast_read (id int PRIMARY KEY, name text)"))
        connection.execute(
            text("INSERT INTO bench_fast_read SELECT n, 'row ' || n FROM generate_series(1, 100) n")
        )
    with LatencyProxy(server.host, server.port, rtt) as proxy:
        measured = round_trip(proxy.url(server.url("psycopg")))
        keys = list(range(1, scopes + 1))
        series = {
            "sync": _sync(proxy.url(server.url("psycopg")), rounds, keys),
            "async": asyncio.run(_async(proxy.url(server.url("asyncpg")), rounds, keys)),
        }
    return FastRead(measured * 1000, series)


def round_trip(url: str) -> float:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as connection:
            timings = []
            for _ in range(20):
                started = time.perf_counter()
                connection.execute(text("SELECT 1"))
                timings.append(time.perf_counter() - started)
        return sorted(timings)[len(timings) // 2]
    finally:
        engine.dispose()


def _sync(url: str, rounds: int, keys: Sequence[int]) -> dict[str, Series]:
    engine = create_engine(url)
    manager = SessionManager(url, config=CONFIG)
    try:

        def raw(batch: Sequence[int]) -> None:
            for key in batch:
                with engine.begin() as connection:
                    connection.execute(READ, {"id": key}).one()

        def transaction(batch: Sequence[int]) -> None:
            for key in batch:
                with manager.session_scope(
                    read_only=True, isolation_level="READ COMMITTED"
                ) as session:
                    session.execute(READ, {"id": key}).one()

        def fast(batch: Sequence[int]) -> None:
            for key in batch:
                with manager.session_scope(read_only=True) as session:
                    session.execute(READ, {"id": key}).one()

        return run_interleaved(
            _variants(raw, transaction, fast),
            rounds=rounds,
            keys_for_round=lambda: keys,
            warmup_keys=keys[:5],
            rng=random.Random(3),
        )
    finally:
        manager.dispose()
        engine.dispose()


async def _async(url: str, rounds: int, keys: Sequence[int]) -> dict[str, Series]:
    engine = create_async_engine(url)
    manager = AsyncSessionManager(url, config=CONFIG)
    try:

        async def raw(batch: Sequence[int]) -> None:
            for key in batch:
                async with engine.begin() as connection:
                    (await connection.execute(READ, {"id": key})).one()

        async def transaction(batch: Sequence[int]) -> None:
            for key in batch:
                async with manager.session_scope(
                    read_only=True, isolation_level="READ COMMITTED"
                ) as session:
                    (await session.execute(READ, {"id": key})).one()

        async def fast(batch: Sequence[int]) -> None:
            for key in batch:
                async with manager.session_scope(read_only=True) as session:
                    (await session.execute(READ, {"id": key})).one()

        return await run_interleaved_async(
            _variants(raw, transaction, fast),
            rounds=rounds,
            keys_for_round=lambda: keys,
            warmup_keys=keys[:5],
            rng=random.Random(3),
        )
    finally:
        await manager.dispose()
        await engine.dispose()


def _variants(raw: Any, transaction: Any, fast: Any) -> list[Variant[Any]]:
    return [
        Variant("raw", "raw SQLAlchemy engine.begin()", raw),
        Variant("transaction", "read_only=True, in a READ ONLY transaction", transaction),
        Variant("fast", "read_only=True, the fast path", fast),
    ]
