"""Section "profile" (not run by default): where a sync scope spends its own time.

cProfile over sync ``session_scope`` (monitoring on) around ``SELECT 1`` on
in-memory SQLite; lists sessionscope's functions by own time (``tottime``)
and the share of the profiled time they take. cProfile's per-call cost
inflates small, call-heavy functions: read the order, not the absolute figures.
"""

from __future__ import annotations

import cProfile
import dataclasses
import pstats
from typing import Any

from sqlalchemy import text
from sqlalchemy.pool import StaticPool

from sessionscope import SessionConfig, SessionManager

__all__ = ["ProfileResult", "run_profile"]

SELECT_1 = text("SELECT 1")
PACKAGE_MARK = "/sessionscope/"
TOP = 15


@dataclasses.dataclass
class ProfileRow:
    function: str  # file:line(name), the file relative to the package
    calls: int
    own_seconds: float
    cumulative_seconds: float


@dataclasses.dataclass
class ProfileResult:
    scopes: int
    total_seconds: float
    own_seconds: float  # in sessionscope's functions
    rows: list[ProfileRow]

    def report(self) -> str:
        per_scope = 1e6 / self.scopes
        lines = [
            f"  {self.scopes:,} scopes profiled: {self.total_seconds * per_scope:.1f} µs per "
            f"scope under cProfile, {self.own_seconds * per_scope:.1f} µs of it in "
            f"sessionscope's own functions ({self.own_seconds / self.total_seconds:.0%})",
            f"  {'own µs/scope':>12}  {'cum µs/scope':>12}  {'calls/scope':>11}  function",
        ]
        for row in self.rows:
            lines.append(
                f"  {row.own_seconds * per_scope:12.2f}  {row.cumulative_seconds * per_scope:12.2f}"
                f"  {row.calls / self.scopes:11.1f}  {row.function}"
            )
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def run_profile(scopes: int) -> ProfileResult:
    manager = SessionManager(
        "sqlite://", config=SessionConfig(enable_monitoring=True), poolclass=StaticPool
    )

    def run(count: int) -> None:
        for _ in range(count):
            with manager.session_scope() as session:
                session.execute(SELECT_1).scalar_one()

    try:
        run(min(scopes, 2000))  # warm-up: caches filled
        profiler = cProfile.Profile()
        profiler.runcall(run, scopes)
    finally:
        manager.dispose()
    stats: dict[tuple[str, int, str], tuple[Any, ...]] = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    total = sum(entry[2] for entry in stats.values())
    rows = [
        ProfileRow(_where(filename, line, name), calls, own, cumulative)
        for (filename, line, name), (_, calls, own, cumulative, _) in stats.items()
        if PACKAGE_MARK in filename
    ]
    rows.sort(key=lambda row: row.own_seconds, reverse=True)
    own = sum(row.own_seconds for row in rows)
    return ProfileResult(scopes, total, own, rows[:TOP])


def _where(filename: str, line: int, name: str) -> str:
    return f"{filename.rsplit(PACKAGE_MARK, 1)[1]}:{line}({name})"
