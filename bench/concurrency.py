"""Section "concurrency": throughput under contention for the pool, on PostgreSQL.

async: many tasks (default 200) share a pool of 10 connections
(``pool_size=10, max_overflow=0``); sync: 8 threads share a pool of 8. Every
worker runs units of work on random keys until the variant's time is up.
Raw SQLAlchemy and ``session_scope`` (monitoring on) have the same pool
settings, each on its own engine, and are timed alternately over a few
rounds (shuffled order). Throughput counts every unit completed, divided by
the time from the start until the last worker finished. Errors are counted
(and must be none).

Each worker draws its random keys from its own share of the rows: two
workers never wait for each other's row lock (what is measured is the pool
and the code, not lock queues), and no read-modify-write update is lost, so
the sum of the balances must grow by exactly the units completed.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import random
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from sessionscope import AsyncSessionManager, SessionConfig, SessionManager

from .harness import Series, format_table, paired_ratio
from .workload import ACCOUNTS, Database, total_balance, unit_of_work, unit_of_work_async

__all__ = ["ConcurrencyResult", "Settings", "run_concurrency"]

BASELINE = "raw_sqlalchemy"
SCOPE = "scope_monitoring_on"
MAX_SHOWN_ERRORS = 10


@dataclasses.dataclass(frozen=True)
class Settings:
    duration: float  # seconds per variant and round
    rounds: int
    warmup: float  # seconds per variant, before the rounds
    tasks: int = 200  # async workers
    async_pool: int = 10
    threads: int = 8  # sync workers
    sync_pool: int = 8


@dataclasses.dataclass
class Measurement:
    units: int
    elapsed: float
    errors: collections.Counter[str]

    @property
    def throughput(self) -> float:
        return self.units / self.elapsed


@dataclasses.dataclass
class ConcurrencyResult:
    flavour: str
    workers: str  # e.g. "200 tasks, pool of 10"
    series: dict[str, Series]  # units per second, per round
    errors: dict[str, collections.Counter[str]] = dataclasses.field(default_factory=dict)
    completed: int = 0  # units of work completed, warm-ups included

    def add(self, key: str, measurement: Measurement, timed: bool) -> None:
        if timed:
            self.series[key].values.append(measurement.throughput)
        self.errors.setdefault(key, collections.Counter()).update(measurement.errors)
        self.completed += measurement.units

    @property
    def ratio(self) -> float:
        """Paired: the median over rounds of the ratio within each round."""
        return paired_ratio(self.series[SCOPE], self.series[BASELINE])

    @property
    def error_count(self) -> int:
        return sum(sum(counter.values()) for counter in self.errors.values())

    def table(self) -> str:
        rows = []
        for key, series in self.series.items():
            baseline = self.series[BASELINE]
            rows.append(
                [
                    series.label + ("  [baseline]" if key == BASELINE else ""),
                    f"{series.median:,.0f}",
                    f"{series.minimum:,.0f}",
                    f"{series.spread:.1%}",
                    f"{paired_ratio(series, baseline):.3f}x",
                    f"{series.median / baseline.median:.3f}x",
                    str(sum(self.errors.get(key, {}).values())),
                ]
            )
        headers = [
            "variant",
            "median units/s",
            "min units/s",
            "IQR",
            "ratio",
            "of medians",
            "errors",
        ]
        text = format_table(headers, rows)
        for key, counter in self.errors.items():
            for message, count in counter.most_common(MAX_SHOWN_ERRORS):
                text += f"\n  ERROR in {key} (x{count}): {message}"
        return text

    def as_json(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "workers": self.workers,
            "baseline": BASELINE,
            "unit": "units of work per second (per round)",
            "ratio": self.ratio,
            "ratio_of_medians": self.series[SCOPE].median / self.series[BASELINE].median,
            "variants": {
                key: series.as_json() | {"errors": dict(self.errors.get(key, {}))}
                for key, series in self.series.items()
            },
        }


def run_concurrency(
    flavour: str, database: Database, settings: Settings, rng: random.Random
) -> ConcurrencyResult:
    database.vacuum()
    before = total_balance(database)
    if flavour == "sync":
        result = _run_sync(database, settings, rng)
    else:
        result = asyncio.run(_run_async(database, settings, rng))
    committed = total_balance(database) - before
    if result.error_count == 0 and committed != result.completed:
        raise RuntimeError(
            f"concurrency {flavour}: {committed} units of work committed, "
            f"{result.completed} completed"
        )
    return result


def _schedule(keys: list[str], settings: Settings, rng: random.Random) -> list[tuple[str, bool]]:
    """(variant, timed) in running order: a warm-up of each, then the shuffled rounds."""
    order = [(key, False) for key in keys]
    for _ in range(settings.rounds):
        shuffled = list(keys)
        rng.shuffle(shuffled)
        order += [(key, True) for key in shuffled]
    return order


def _key_drawer(index: int, workers: int, seed: int) -> Callable[[], int]:
    """Random keys from worker ``index``'s share of the rows (every ``workers``-th key)."""
    share = range(index % workers + 1, ACCOUNTS + 1, workers)
    if not share:
        raise ValueError(f"{workers} workers need at least as many rows, not {ACCOUNTS}")
    return functools.partial(random.Random(seed + index).choice, share)


# -- sync: threads -----------------------------------------------------------------------


def _run_sync(database: Database, settings: Settings, rng: random.Random) -> ConcurrencyResult:
    pool = {"pool_size": settings.sync_pool, "max_overflow": 0}
    engine = create_engine(database.sync_url, **pool)
    manager = SessionManager(
        database.sync_url, config=SessionConfig(enable_monitoring=True), **pool
    )
    maker = sessionmaker(engine, expire_on_commit=False)

    def raw(key: int) -> None:
        with maker.begin() as session:
            unit_of_work(session, key)

    def scope(key: int) -> None:
        with manager.session_scope() as session:
            unit_of_work(session, key)

    units: dict[str, Callable[[int], None]] = {BASELINE: raw, SCOPE: scope}
    workers = f"{settings.threads} threads, pool of {settings.sync_pool}, psycopg"
    result = ConcurrencyResult(
        "sync",
        workers,
        {
            BASELINE: Series(BASELINE, "sessionmaker.begin()"),
            SCOPE: Series(SCOPE, "session_scope, monitoring on"),
        },
    )
    try:
        for key, timed in _schedule(list(units), settings, rng):
            duration = settings.duration if timed else settings.warmup
            seed = rng.randrange(2**32)
            result.add(key, _threads(units[key], settings.threads, duration, seed), timed)
    finally:
        engine.dispose()
        manager.dispose()
    return result


def _threads(unit: Callable[[int], None], threads: int, duration: float, seed: int) -> Measurement:
    errors: collections.Counter[str] = collections.Counter()
    counts = [0] * threads
    lock = threading.Lock()
    start_line = threading.Barrier(threads + 1)
    deadline = [0.0]

    def worker(index: int) -> None:
        draw = _key_drawer(index, threads, seed)
        start_line.wait()
        end = deadline[0]
        done = 0
        while time.perf_counter() < end:
            try:
                unit(draw())
                done += 1
            except Exception as error:
                with lock:
                    errors[repr(error)] += 1
        counts[index] = done

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    start = time.perf_counter()
    deadline[0] = start + duration
    start_line.wait()
    for thread in workers:
        thread.join()
    elapsed = time.perf_counter() - start
    return Measurement(sum(counts), elapsed, errors)


# -- async: tasks ------------------------------------------------------------------------


async def _run_async(
    database: Database, settings: Settings, rng: random.Random
) -> ConcurrencyResult:
    pool = {"pool_size": settings.async_pool, "max_overflow": 0}
    engine = create_async_engine(database.async_url, **pool)
    manager = AsyncSessionManager(
        database.async_url, config=SessionConfig(enable_monitoring=True), **pool
    )
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def raw(key: int) -> None:
        async with maker.begin() as session:
            await unit_of_work_async(session, key)

    async def scope(key: int) -> None:
        async with manager.session_scope() as session:
            await unit_of_work_async(session, key)

    units: dict[str, Callable[[int], Awaitable[None]]] = {BASELINE: raw, SCOPE: scope}
    workers = f"{settings.tasks} tasks, pool of {settings.async_pool}, asyncpg"
    result = ConcurrencyResult(
        "async",
        workers,
        {
            BASELINE: Series(BASELINE, "async_sessionmaker.begin()"),
            SCOPE: Series(SCOPE, "session_scope, monitoring on"),
        },
    )
    try:
        for key, timed in _schedule(list(units), settings, rng):
            duration = settings.duration if timed else settings.warmup
            seed = rng.randrange(2**32)
            result.add(key, await _tasks(units[key], settings.tasks, duration, seed), timed)
    finally:
        await engine.dispose()
        await manager.dispose()
    return result


async def _tasks(
    unit: Callable[[int], Awaitable[None]], tasks: int, duration: float, seed: int
) -> Measurement:
    errors: collections.Counter[str] = collections.Counter()
    start = time.perf_counter()
    end = start + duration

    async def worker(index: int) -> int:
        draw = _key_drawer(index, tasks, seed)
        done = 0
        while time.perf_counter() < end:
            try:
                await unit(draw())
                done += 1
            except Exception as error:
                errors[repr(error)] += 1
        return done

    counts = await asyncio.gather(*(worker(i) for i in range(tasks)))
    elapsed = time.perf_counter() - start
    return Measurement(sum(counts), elapsed, errors)
