"""Section "gap": why our code costs more inside a PostgreSQL unit of work than alone.

A scope's own code measured alone (section overhead: in-memory SQLite, a
tight loop) is a few microseconds; inside the sync PostgreSQL unit of work
(section e2e) the same code adds several times that in CPU time, though what
goes to the server and the pool is the same (the e2e section's wire table).
Between two units the client sleeps in the kernel waiting for the server,
and the code runs again with its caches cold.

This section shows it with a fixed piece of Python shaped like a scope's
bookkeeping (objects made, attributes set and read, small calls, a context
variable, dict insertions and removals, a clock read): its CPU time alone,
in a tight loop, and what it adds to raw SQLAlchemy's unit of work when run
once per unit (paired rounds, CPU time of the thread). The ratio of the two
is what a microsecond of Python measured alone costs inside the unit.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import random
import statistics
import time
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

from .harness import Variant, make_keys, run_interleaved
from .workload import ACCOUNTS, Database, begin_batch

__all__ = ["Gap", "run_gap"]

_current: contextvars.ContextVar[Any] = contextvars.ContextVar("bench_gap", default=None)


class _Thing:
    def __init__(self, owner: Any, options: Any) -> None:
        self.owner = owner
        self.options = options
        self.session = None
        self.started = 0.0

    def enter(self, registry: dict[Any, None]) -> None:
        self.started = time.perf_counter()
        registry[self] = None
        self.session = self.options
        _current.set(self)

    def check(self) -> bool:
        return self.session is not None and self.owner is not None

    def leave(self, registry: dict[Any, None]) -> float:
        _current.set(None)
        del registry[self]
        return time.perf_counter() - self.started


def bookkeeping(repeat: int = 8) -> None:
    """The fixed piece of Python: about a scope's worth of small operations, x repeat."""
    registry: dict[Any, None] = {}
    for n in range(repeat):
        thing = _Thing(n, registry)
        thing.enter(registry)
        if thing.check():
            thing.leave(registry)


@dataclasses.dataclass
class Gap:
    alone_us: float  # CPU µs of bookkeeping() in a tight loop
    inside_us: float  # CPU µs it adds to a PostgreSQL unit of work (median of rounds)

    @property
    def factor(self) -> float:
        return self.inside_us / self.alone_us

    def report(self) -> str:
        return (
            f"  a fixed piece of Python (bench/gap.py): {self.alone_us:.1f} µs of CPU alone, "
            f"in a tight loop;\n  {self.inside_us:+.1f} µs of CPU when run once per sync "
            f"PostgreSQL unit of work: {self.factor:.1f}x"
        )

    def as_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "factor": self.factor}


def run_gap(database: Database, *, rounds: int, batch: int, rng: random.Random) -> Gap:
    alone = _alone()
    with contextlib.ExitStack() as stack:
        engine = create_engine(database.sync_url)
        stack.callback(engine.dispose)
        maker = sessionmaker(engine, expire_on_commit=False)

        series = run_interleaved(
            [
                Variant("raw", "", begin_batch(maker)),
                Variant("more", "", begin_batch(maker, then=bookkeeping)),
            ],
            rounds=rounds,
            keys_for_round=lambda: make_keys(rng, batch, ACCOUNTS),
            warmup_keys=make_keys(rng, batch, ACCOUNTS),
            rng=rng,
        )
    added = statistics.median(
        more - raw for more, raw in zip(series["more"].cpu, series["raw"].cpu, strict=True)
    )
    return Gap(alone, added)


def _alone(loops: int = 20_000) -> float:
    """The median of 5 batches: a median, as what it is compared with."""
    for _ in range(1000):
        bookkeeping()
    timings = []
    for _ in range(5):
        started = time.thread_time_ns()
        for _ in range(loops):
            bookkeeping()
        timings.append((time.thread_time_ns() - started) / loops / 1000)
    return statistics.median(timings)
