"""Section "overhead": what a scope costs on top of SQLAlchemy, around ``SELECT 1``.

In-memory SQLite (``StaticPool``: one connection, no pool work) is where the
database costs least, so what a scope adds shows most. Two baselines:

(a) raw SQLAlchemy on the very engine the managers use, its sessions
    emitting the BEGIN a manager's sessions emit (real transactions and
    SAVEPOINTs on SQLite), so the baseline does the same database work: the
    difference is sessionscope's Python code.
(b) raw SQLAlchemy on a plain engine without that BEGIN: the difference is
    the whole cost of using sessionscope, the real SQLite transaction included.

Both managers (monitoring on and off) share that one engine. Differences are
paired: the median over rounds of (variant - baseline) within each round.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import create_engine, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import StaticPool

from sessionscope import AsyncSessionManager, SessionConfig, SessionManager

from .harness import (
    AsyncBatch,
    Series,
    SyncBatch,
    Variant,
    format_table,
    paired_difference,
    run_interleaved,
    run_interleaved_async,
)
from .workload import with_sqlite_begin

__all__ = ["OverheadResult", "run_overhead"]

SELECT_1 = text("SELECT 1")
HOOKED = "raw_hooked_engine"  # baseline (a)
PLAIN = "raw_plain_engine"  # baseline (b)
SCOPES = ("scope_monitoring_on", "scope_monitoring_off", "with_session")


def select_one(session: Session) -> None:
    session.execute(SELECT_1).scalar_one()


async def select_one_async(session: AsyncSession) -> None:
    (await session.execute(SELECT_1)).scalar_one()


@dataclasses.dataclass
class OverheadResult:
    flavour: str
    series: dict[str, Series]

    def added(self, key: str, baseline: str) -> float:
        """µs per scope that ``key`` adds over ``baseline`` (paired median)."""
        return paired_difference(self.series[key], self.series[baseline])

    def table(self) -> str:
        rows = []
        for key, series in self.series.items():
            if key in (HOOKED, PLAIN):
                over_a = "baseline (a)" if key == HOOKED else f"{self.added(key, HOOKED):+.1f}"
                over_b = "baseline (b)" if key == PLAIN else f"{self.added(key, PLAIN):+.1f}"
            else:
                over_a = f"{self.added(key, HOOKED):+.1f}"
                over_b = f"{self.added(key, PLAIN):+.1f}"
            rows.append(
                [
                    series.label,
                    f"{series.median:.1f}",
                    f"{series.minimum:.1f}",
                    f"{series.spread:.1%}",
                    over_a,
                    over_b,
                ]
            )
        headers = ["variant", "median µs", "min µs", "IQR", "+µs (a)", "+µs (b)"]
        return format_table(headers, rows)

    def as_json(self) -> dict[str, Any]:
        return {
            "flavour": self.flavour,
            "unit": "µs per scope around SELECT 1 (per-round means)",
            "variants": {key: series.as_json() for key, series in self.series.items()},
            "added_us": {
                key: {
                    "a_same_engine": self.added(key, HOOKED),
                    "b_plain_engine": self.added(key, PLAIN),
                }
                for key in SCOPES
            },
            "hook_us": self.added(HOOKED, PLAIN),
        }


def run_overhead(flavour: str, *, rounds: int, batch: int, rng: random.Random) -> OverheadResult:
    keys = range(batch)  # the values do not matter: one scope per key

    def same_keys() -> Sequence[int]:
        return keys

    if flavour == "sync":
        on = SessionManager(
            "sqlite://", config=SessionConfig(enable_monitoring=True), poolclass=StaticPool
        )
        off = SessionManager(on.engine, config=SessionConfig(enable_monitoring=False))
        plain = create_engine("sqlite://", poolclass=StaticPool)
        try:
            series = run_interleaved(
                _sync_variants(on, off, plain),
                rounds=rounds,
                keys_for_round=same_keys,
                warmup_keys=keys,
                rng=rng,
            )
        finally:
            plain.dispose()
            on.dispose()
        return OverheadResult(flavour, series)

    async def main() -> dict[str, Series]:
        on = AsyncSessionManager(
            "sqlite+aiosqlite://",
            config=SessionConfig(enable_monitoring=True),
            poolclass=StaticPool,
        )
        off = AsyncSessionManager(on.engine, config=SessionConfig(enable_monitoring=False))
        plain = create_async_engine("sqlite+aiosqlite://", poolclass=StaticPool)
        try:
            return await run_interleaved_async(
                _async_variants(on, off, plain),
                rounds=rounds,
                keys_for_round=same_keys,
                warmup_keys=keys,
                rng=rng,
            )
        finally:
            await plain.dispose()
            await on.dispose()

    return OverheadResult(flavour, asyncio.run(main()))


def _sync_variants(on: SessionManager, off: SessionManager, plain: Any) -> list[Variant[SyncBatch]]:
    def raw(maker: sessionmaker[Session]) -> SyncBatch:
        def run(keys: Sequence[int]) -> None:
            for _ in keys:
                with maker.begin() as session:
                    select_one(session)

        return run

    def scope(manager: SessionManager) -> SyncBatch:
        def run(keys: Sequence[int]) -> None:
            for _ in keys:
                with manager.session_scope() as session:
                    select_one(session)

        return run

    work = on.with_session(select_one)

    def decorated(keys: Sequence[int]) -> None:
        for _ in keys:
            work()

    return [
        Variant(
            PLAIN,
            "sessionmaker.begin(), plain engine",
            raw(sessionmaker(plain, expire_on_commit=False)),
        ),
        Variant(
            HOOKED,
            "sessionmaker.begin() + the SQLite BEGIN",
            raw(with_sqlite_begin(sessionmaker(on.engine, expire_on_commit=False))),
        ),
        Variant(SCOPES[0], "session_scope, monitoring on", scope(on)),
        Variant(SCOPES[1], "session_scope, monitoring off", scope(off)),
        Variant(SCOPES[2], "@with_session, monitoring on", decorated),
    ]


def _async_variants(
    on: AsyncSessionManager, off: AsyncSessionManager, plain: Any
) -> list[Variant[AsyncBatch]]:
    def raw(maker: async_sessionmaker[AsyncSession]) -> AsyncBatch:
        async def run(keys: Sequence[int]) -> None:
            for _ in keys:
                async with maker.begin() as session:
                    await select_one_async(session)

        return run

    def scope(manager: AsyncSessionManager) -> AsyncBatch:
        async def run(keys: Sequence[int]) -> None:
            for _ in keys:
                async with manager.session_scope() as session:
                    await select_one_async(session)

        return run

    work = on.with_session(select_one_async)

    async def decorated(keys: Sequence[int]) -> None:
        for _ in keys:
            await work()

    return [
        Variant(
            PLAIN,
            "async_sessionmaker.begin(), plain engine",
            raw(async_sessionmaker(plain, expire_on_commit=False)),
        ),
        Variant(
            HOOKED,
            "async_sessionmaker.begin() + the SQLite BEGIN",
            raw(with_sqlite_begin(async_sessionmaker(on.engine, expire_on_commit=False))),
        ),
        Variant(SCOPES[0], "session_scope, monitoring on", scope(on)),
        Variant(SCOPES[1], "session_scope, monitoring off", scope(off)),
        Variant(SCOPES[2], "@with_session, monitoring on", decorated),
    ]
