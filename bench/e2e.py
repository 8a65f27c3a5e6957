"""Section "e2e": the unit of work end to end, per flavour x backend.

Variants of each flavour x backend group, each on its own connection or engine:

- the raw driver, one connection reused (as a pool would), its own transactions;
- raw SQLAlchemy: ``with sessionmaker.begin() as session:`` (``expire_on_commit=False``);
- SQLite only, for reference: the same with the BEGIN a manager's sessions emit
  (real transactions and SAVEPOINTs): the difference to the previous line is
  that BEGIN's cost, the rest up to ``session_scope`` is sessionscope's own code;
- for reference, raw SQLAlchemy taking its connection before the work
  (``session.connection()``), as a scope does so that it can retry getting
  one before its body runs and measure the wait (DESIGN §4.1, §6): between
  it and the baseline is that early connection's cost, above it our code's;
- ``session_scope()`` with monitoring on, and with monitoring off;
- ``@with_session`` with monitoring on;
- the peers of peers.py (advanced-alchemy, fastapi-sqla), where installed.

Every SQLAlchemy variant of a group runs on one engine (a default QueuePool;
the managers borrow it), so on one pooled connection: the server sees the
same session whichever variant runs, and what differs is the client's code.
(With an engine each, PostgreSQL ran each variant on a backend process of its
own, and the ratios moved by several percent from run to run.)
The ratio is paired (see harness.py); the ratio of medians is shown beside it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Engine, create_engine
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.orm import sessionmaker

from sessionscope import AsyncSessionManager, SessionConfig, SessionManager

from .harness import (
    AsyncBatch,
    Series,
    SyncBatch,
    Variant,
    format_table,
    make_keys,
    paired_noise,
    paired_ratio,
    run_interleaved,
    run_interleaved_async,
)
from .peers import async_peers, sync_peers
from .wire import UNITS, Wire, count_async, count_sync
from .workload import (
    ACCOUNTS,
    ASYNCPG_SELECT,
    ASYNCPG_UPDATE,
    PSYCOPG_SELECT,
    PSYCOPG_UPDATE,
    SQLITE_SELECT,
    SQLITE_UPDATE,
    Database,
    begin_batch,
    run_sqlite3,
    total_balance,
    unit_of_work,
    unit_of_work_async,
    with_sqlite_begin,
)

__all__ = ["GroupResult", "describe", "run_group"]

BASELINE = "raw_sqlalchemy"
# SQLite only: raw SQLAlchemy with the BEGIN a manager's sessions emit (real
# SAVEPOINTs): between it and the baseline is the BEGIN's cost, above it our code's.
HOOKED = "raw_sqlalchemy_hooked"
HOOKED_LABEL = "sessionmaker.begin() + the SQLite BEGIN"
EARLY = "raw_sqlalchemy_early"
EARLY_LABEL = "sessionmaker.begin() + connection() first"
MONITORING_ON = SessionConfig(enable_monitoring=True)
MONITORING_OFF = SessionConfig(enable_monitoring=False)


@dataclasses.dataclass
class GroupResult:
    flavour: str  # "sync" or "async"
    database: Database
    series: dict[str, Series]
    units: int  # units of work run per variant, warm-up included
    wire: Wire | None = None  # what the SQLAlchemy variants sent (wire.py)

    @property
    def name(self) -> str:
        """E.g. "sync/postgres", or "sync/postgres@1ms" behind the latency proxy."""
        return f"{self.flavour}/{self.database.backend}{self.database.latency_tag}"

    def noise(self, key: str, other: str = BASELINE) -> float:
        """The standard error of ratio_to(key, other) (harness.paired_noise)."""
        return paired_noise(self.series[key], self.series[other])

    def ratio_to(self, key: str, other: str) -> float:
        """Paired, as ratio(), against another variant of the group (a peer)."""
        return paired_ratio(self.series[key], self.series[other])

    def round_ratios(self, key: str) -> list[float]:
        """Per round: this variant's time over the baseline's."""
        base = self.series[BASELINE].values
        return [a / b for a, b in zip(self.series[key].values, base, strict=True)]

    def ratio(self, key: str) -> float:
        """Paired: the median over rounds of the ratio within each round."""
        return paired_ratio(self.series[key], self.series[BASELINE])

    def ratio_of_medians(self, key: str) -> float:
        return self.series[key].median / self.series[BASELINE].median

    def table(self) -> str:
        rows = []
        for key, series in self.series.items():
            label = series.label + ("  [baseline]" if key == BASELINE else "")
            rows.append(
                [
                    label,
                    f"{series.median:.1f}",
                    f"{series.minimum:.1f}",
                    f"{series.spread:.1%}",
                    f"{self.ratio(key):.3f}x",
                    f"{self.ratio_of_medians(key):.3f}x",
                    f"{series.cpu_median:.1f}",
                    f"{series.cpu_median - self.series[BASELINE].cpu_median:+.1f}",
                ]
            )
        headers = [
            "variant",
            "median µs",
            "min µs",
            "IQR",
            "ratio",
            "of medians",
            "CPU µs",
            "CPU +µs",
        ]
        table = format_table(headers, rows)
        if self.wire is not None:
            labels = {key: series.label for key, series in self.series.items()}
            same = "the same for every variant" if self.wire.identical else "NOT the same"
            table += f"\n\n  sent and asked of the pool ({same}):\n" + self.wire.table(labels)
        return table

    def as_json(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "backend": self.database.backend,
            "baseline": BASELINE,
            "unit": "µs per unit of work (per-round means)",
            "units_per_variant": self.units,
            "rtt_ms": self.database.rtt_ms,
            "wire": None if self.wire is None else self.wire.per_unit,
            "variants": {
                key: series.as_json()
                | {"ratio": self.ratio(key), "ratio_of_medians": self.ratio_of_medians(key)}
                for key, series in self.series.items()
            },
        }


def run_group(
    flavour: str,
    database: Database,
    *,
    rounds: int,
    batch: int,
    rng: random.Random,
    wire: bool = True,
) -> GroupResult:
    """Time every variant of one flavour x backend; check that every unit committed;
    then (``wire``) count what each SQLAlchemy variant sent."""
    database.vacuum()
    before = total_balance(database)
    warmup_keys = make_keys(rng, batch, ACCOUNTS)
    wire_keys = make_keys(rng, UNITS, ACCOUNTS) if wire else []
    sent: Wire | None = None

    def keys_for_round() -> list[int]:
        return make_keys(rng, batch, ACCOUNTS)

    if flavour == "sync":
        with contextlib.ExitStack() as stack:
            sync_variants, engine = _sync_variants(database, stack)
            series = run_interleaved(
                sync_variants,
                rounds=rounds,
                keys_for_round=keys_for_round,
                warmup_keys=warmup_keys,
                rng=rng,
            )
            if wire:
                sent = count_sync(engine, _through_engine(sync_variants), wire_keys)
    else:

        async def main() -> tuple[dict[str, Series], Wire | None]:
            async with contextlib.AsyncExitStack() as stack:
                async_variants, engine = await _async_variants(database, stack)
                measured = await run_interleaved_async(
                    async_variants,
                    rounds=rounds,
                    keys_for_round=keys_for_round,
                    warmup_keys=warmup_keys,
                    rng=rng,
                )
                if not wire:
                    return measured, None
                counted = await count_async(engine, _through_engine(async_variants), wire_keys)
                return measured, counted

        series, sent = asyncio.run(main())
    units = len(warmup_keys) + rounds * batch
    committed = total_balance(database) - before
    expected = units * len(series) + (0 if sent is None else len(wire_keys) * len(sent.per_unit))
    if committed != expected:
        raise RuntimeError(
            f"{flavour}/{database.backend}: {committed} units of work committed, "
            f"{expected} expected"
        )
    return GroupResult(flavour, database, series, units, sent)


def _through_engine(variants: list[Variant[Any]]) -> list[Variant[Any]]:
    """The variants that run on the shared engine (not the raw drivers)."""
    return [variant for variant in variants if not variant.key.startswith("raw_driver")]


# -- sync ------------------------------------------------------------------------------


def _sync_variants(
    database: Database, stack: contextlib.ExitStack
) -> tuple[list[Variant[SyncBatch]], Engine]:
    variants = [_raw_sync_driver(database, stack)]

    engine = create_engine(database.sync_url)
    database.prepare(engine)
    stack.callback(engine.dispose)
    maker = sessionmaker(engine, expire_on_commit=False)

    variants.append(Variant(BASELINE, "sessionmaker.begin()", begin_batch(maker)))

    def raw_early(keys: Sequence[int]) -> None:
        for key in keys:
            with maker.begin() as session:
                session.connection()
                unit_of_work(session, key)

    variants.append(Variant(EARLY, EARLY_LABEL, raw_early))

    def manager(config: SessionConfig) -> SessionManager:
        return SessionManager(engine, config=config)  # borrowed: disposed with it

    if database.backend == "sqlite":  # the share of the SQLite BEGIN, on its own
        hooked = with_sqlite_begin(sessionmaker(engine, expire_on_commit=False))

        def raw_hooked(keys: Sequence[int]) -> None:
            for key in keys:
                with hooked.begin() as session:
                    unit_of_work(session, key)

        variants.append(Variant(HOOKED, HOOKED_LABEL, raw_hooked))

    for key, label, config in (
        ("scope_monitoring_on", "session_scope, monitoring on", MONITORING_ON),
        ("scope_monitoring_off", "session_scope, monitoring off", MONITORING_OFF),
    ):
        variants.append(Variant(key, label, _sync_scope_batch(manager(config))))

    work = manager(MONITORING_ON).with_session(unit_of_work)

    def with_session(keys: Sequence[int]) -> None:
        for key in keys:
            work(key)

    variants.append(Variant("with_session", "@with_session, monitoring on", with_session))
    return variants + sync_peers(engine), engine


def _sync_scope_batch(manager: SessionManager) -> SyncBatch:
    def run(keys: Sequence[int]) -> None:
        for key in keys:
            with manager.session_scope() as session:
                unit_of_work(session, key)

    return run


def _raw_sync_driver(database: Database, stack: contextlib.ExitStack) -> Variant[SyncBatch]:
    if database.backend == "sqlite":
        sqlite_connection = database.sqlite3_connection()
        stack.callback(sqlite_connection.close)

        def run_sqlite(keys: Sequence[int]) -> None:
            run_sqlite3(sqlite_connection, keys)

        return Variant("raw_driver", "raw sqlite3 (BEGIN ... commit())", run_sqlite)

    import psycopg

    assert database.conninfo is not None
    connection = psycopg.connect(database.conninfo)
    stack.callback(connection.close)

    def run_psycopg(keys: Sequence[int]) -> None:
        execute = connection.execute
        for key in keys:  # psycopg sends BEGIN before the first statement
            row = execute(PSYCOPG_SELECT, (key,)).fetchone()
            assert row is not None
            execute(PSYCOPG_UPDATE, (row[0] + 1, key))
            connection.commit()

    return Variant("raw_driver", "raw psycopg (commit())", run_psycopg)


# -- async -----------------------------------------------------------------------------


async def _async_variants(
    database: Database, stack: contextlib.AsyncExitStack
) -> tuple[list[Variant[AsyncBatch]], AsyncEngine]:
    variants = await _raw_async_drivers(database, stack)

    engine = create_async_engine(database.async_url)
    database.prepare(engine)
    stack.push_async_callback(engine.dispose)
    maker = async_sessionmaker(engine, expire_on_commit=False)

    async def raw_sqlalchemy(keys: Sequence[int]) -> None:
        for key in keys:
            async with maker.begin() as session:
                await unit_of_work_async(session, key)

    variants.append(Variant(BASELINE, "async_sessionmaker.begin()", raw_sqlalchemy))

    async def raw_early(keys: Sequence[int]) -> None:
        for key in keys:
            async with maker.begin() as session:
                await session.connection()
                await unit_of_work_async(session, key)

    variants.append(Variant(EARLY, "async_" + EARLY_LABEL, raw_early))

    def manager(config: SessionConfig) -> AsyncSessionManager:
        return AsyncSessionManager(engine, config=config)  # borrowed: disposed with it

    if database.backend == "sqlite":
        hooked = with_sqlite_begin(async_sessionmaker(engine, expire_on_commit=False))

        async def raw_hooked(keys: Sequence[int]) -> None:
            for key in keys:
                async with hooked.begin() as session:
                    await unit_of_work_async(session, key)

        variants.append(Variant(HOOKED, "async_" + HOOKED_LABEL, raw_hooked))

    for key, label, config in (
        ("scope_monitoring_on", "session_scope, monitoring on", MONITORING_ON),
        ("scope_monitoring_off", "session_scope, monitoring off", MONITORING_OFF),
    ):
        variants.append(Variant(key, label, _async_scope_batch(manager(config))))

    work = manager(MONITORING_ON).with_session(unit_of_work_async)

    async def with_session(keys: Sequence[int]) -> None:
        for key in keys:
            await work(key)

    variants.append(Variant("with_session", "@with_session, monitoring on", with_session))
    return variants + async_peers(engine), engine


def _async_scope_batch(manager: AsyncSessionManager) -> AsyncBatch:
    async def run(keys: Sequence[int]) -> None:
        for key in keys:
            async with manager.session_scope() as session:
                await unit_of_work_async(session, key)

    return run


async def _raw_async_drivers(
    database: Database, stack: contextlib.AsyncExitStack
) -> list[Variant[AsyncBatch]]:
    if database.backend == "sqlite":
        import aiosqlite

        assert database.sqlite_path is not None
        sqlite_connection = await aiosqlite.connect(database.sqlite_path, isolation_level=None)
        stack.push_async_callback(sqlite_connection.close)
        if database.fast_sqlite:
            await sqlite_connection.execute("PRAGMA synchronous = NORMAL")

        async def run_aiosqlite(keys: Sequence[int]) -> None:
            execute = sqlite_connection.execute
            for key in keys:
                await execute("BEGIN")
                rows: Any = await sqlite_connection.execute_fetchall(SQLITE_SELECT, (key,))
                await execute(SQLITE_UPDATE, (rows[0][0] + 1, key))
                await sqlite_connection.commit()

        return [Variant("raw_driver", "raw aiosqlite (BEGIN ... commit())", run_aiosqlite)]

    import asyncpg  # type: ignore[import-untyped]
    import psycopg

    assert database.conninfo is not None
    pg_connection = await asyncpg.connect(database.conninfo)
    stack.push_async_callback(pg_connection.close)

    async def run_asyncpg(keys: Sequence[int]) -> None:
        for key in keys:
            async with pg_connection.transaction():
                balance = await pg_connection.fetchval(ASYNCPG_SELECT, key)
                await pg_connection.execute(ASYNCPG_UPDATE, balance + 1, key)

    psycopg_connection = await psycopg.AsyncConnection.connect(database.conninfo)
    stack.push_async_callback(psycopg_connection.close)

    async def run_psycopg(keys: Sequence[int]) -> None:
        execute = psycopg_connection.execute
        for key in keys:
            row = await (await execute(PSYCOPG_SELECT, (key,))).fetchone()
            assert row is not None
            await execute(PSYCOPG_UPDATE, (row[0] + 1, key))
            await psycopg_connection.commit()

    return [
        Variant("raw_driver", "raw asyncpg (conn.transaction())", run_asyncpg),
        Variant("raw_driver_psycopg", "raw psycopg async (commit())", run_psycopg),
    ]


def describe(flavour: str, database: Database) -> str:
    """E.g. "async, PostgreSQL (SQLAlchemy on asyncpg)"."""
    if database.backend == "postgres":
        driver = "psycopg" if flavour == "sync" else "asyncpg"
        where = (
            ""
            if database.rtt_ms is None
            else f", behind a proxy: {database.rtt_ms:.2f} ms round trip"
        )
        return f"{flavour}, PostgreSQL (SQLAlchemy on {driver}{where})"
    driver = "sqlite3" if flavour == "sync" else "aiosqlite"
    mode = "rollback journal, synchronous=FULL" if database.durable else "WAL, synchronous=NORMAL"
    return f"{flavour}, SQLite file ({mode}; SQLAlchemy on {driver})"
