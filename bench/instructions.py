"""Section "instructions" (not run by default): our own code per sync scope, counted.

Timings on a shared machine wander by half; instruction counts do not.
``valgrind --tool=callgrind`` runs a child that opens N, then 4N, sync scopes
around ``SELECT 1`` on in-memory SQLite (monitoring on), and the same with raw
SQLAlchemy ``sessionmaker.begin()`` emitting the same BEGIN; the difference of
the two per-scope counts is what sessionscope's own code executes; and once more
with tracing on (``otel.instrument`` with the SDK's providers), when it is installed. Hash seed
fixed, garbage collector off after a warm-up, so two runs agree to ~0.1%.
Compare it between commits, not with the microsecond budget.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
import sys
from typing import Any

__all__ = ["InstructionsResult", "run_instructions"]

_CHILD = """
import gc, sys
from sqlalchemy import text
from sqlalchemy.orm import sessionmaker
from sqlalchemy.pool import StaticPool
from sessionscope import SessionConfig, SessionManager
from bench.workload import with_sqlite_begin

mode, n = sys.argv[1], int(sys.argv[2])
config = SessionConfig(enable_monitoring=True)
manager = SessionManager("sqlite://", config=config, poolclass=StaticPool)
select_1 = text("SELECT 1")
if mode == "raw":
    maker = with_sqlite_begin(sessionmaker(manager.engine, expire_on_commit=False))
    def one():
        with maker.begin() as session:
            session.execute(select_1)
else:
    if mode == "traced":  # spans made (the SDK's), exported nowhere
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.trace import TracerProvider
        from sessionscope.exporters import otel
        otel.instrument(manager, meter_provider=MeterProvider(), tracer_provider=TracerProvider())
    def one():
        with manager.session_scope() as session:
            session.execute(select_1)
for _ in range(2000):
    one()
gc.collect()
gc.disable()
for _ in range(n):
    one()
"""


@dataclasses.dataclass
class InstructionsResult:
    scopes: int
    raw_per_scope: float
    scope_per_scope: float
    # With otel.instrument(..., tracer_provider=) (None: no opentelemetry-sdk here).
    traced_per_scope: float | None = None

    @property
    def own_per_scope(self) -> float:
        return self.scope_per_scope - self.raw_per_scope

    def report(self) -> str:
        return (
            f"  raw SQLAlchemy   {self.raw_per_scope:12,.0f} instructions per scope\n"
            f"  session_scope    {self.scope_per_scope:12,.0f}\n"
            f"  own code         {self.own_per_scope:12,.0f} "
            f"({self.own_per_scope / self.raw_per_scope:.1%} of raw; {self.scopes:,} scopes)"
        ) + (
            ""
            if self.traced_per_scope is None
            else f"\n  own code, traced {self.traced_per_scope - self.raw_per_scope:12,.0f} "
            "(otel.instrument with an SDK TracerProvider and MeterProvider)"
        )

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "own_per_scope": self.own_per_scope}


def run_instructions(scopes: int) -> InstructionsResult | None:
    """None if valgrind is not installed."""
    if shutil.which("valgrind") is None:
        return None

    def count(mode: str, n: int) -> int:
        done = subprocess.run(
            [
                "valgrind",
                "--tool=callgrind",
                "--callgrind-out-file=/dev/null",
                sys.executable,
                "-c",
                _CHILD,
                mode,
                str(n),
            ],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )
        found = re.search(r"Collected : (\d+)", done.stderr)
        if found is None:
            raise RuntimeError(f"no instruction count from callgrind:\n{done.stderr[-2000:]}")
        return int(found.group(1))

    def per_scope(mode: str) -> float:
        return (count(mode, 4 * scopes) - count(mode, scopes)) / (3 * scopes)

    try:
        import opentelemetry.sdk  # noqa: F401 - the traced figure needs it
    except ImportError:
        traced = None
    else:
        traced = per_scope("traced")
    return InstructionsResult(scopes * 3, per_scope("raw"), per_scope("scope"), traced)
