"""Timing, statistics, tables and budgets shared by the benchmark's sections.

A *variant* is one way of running the unit of work (the raw driver, raw
SQLAlchemy, ``session_scope``...): a function that runs it once per key of a
batch. Variants are timed in interleaved rounds: every round runs one batch of
every variant, in a shuffled order, and records the mean time per unit of that
batch. Drift of the machine (other processes, CPU frequency, a server
checkpoint) then hits every variant alike, and the median over the rounds
shrugs off the rounds it hit hardest.

Ratios to the baseline are paired: the median over rounds of (variant /
baseline) within each round, which cancels what drifts from round to round
(on this shared machine the per-round figures of one variant spread by
several percent, more than the differences measured). The ratio of the
two medians is reported beside it.
"""

from __future__ import annotations

import dataclasses
import gc
import math
import random
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Generic, TypeVar

__all__ = [
    "AsyncBatch",
    "Budget",
    "Series",
    "SyncBatch",
    "Variant",
    "format_table",
    "make_keys",
    "paired_difference",
    "paired_noise",
    "paired_ratio",
    "run_interleaved",
    "run_interleaved_async",
]

SyncBatch = Callable[[Sequence[int]], None]
AsyncBatch = Callable[[Sequence[int]], Awaitable[None]]
B = TypeVar("B", SyncBatch, AsyncBatch)


@dataclasses.dataclass(frozen=True)
class Variant(Generic[B]):
    """One way of running the unit of work; ``run(keys)`` runs it once per key."""

    key: str  # stable name, used in the JSON output
    label: str  # what the tables show
    run: B


@dataclasses.dataclass
class Series:
    """The per-round figures of one variant (µs per unit, or units per second)."""

    key: str
    label: str
    values: list[float] = dataclasses.field(default_factory=list)
    # The same rounds in CPU time of the timing thread (time.thread_time()): what
    # of a variant's time is the client's own work rather than waiting.
    cpu: list[float] = dataclasses.field(default_factory=list)

    @property
    def cpu_median(self) -> float:
        return statistics.median(self.cpu) if self.cpu else math.nan

    @property
    def median(self) -> float:
        return statistics.median(self.values)

    @property
    def minimum(self) -> float:
        return min(self.values)

    @property
    def maximum(self) -> float:
        return max(self.values)

    @property
    def spread(self) -> float:
        """The interquartile range as a fraction of the median: how noisy the rounds were."""
        if len(self.values) < 4:
            return (self.maximum - self.minimum) / self.median
        quartiles = statistics.quantiles(self.values, n=4)
        return (quartiles[2] - quartiles[0]) / self.median

    def as_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "median": self.median,
            "min": self.minimum,
            "max": self.maximum,
            "spread": self.spread,
            "rounds": self.values,
            "cpu_median": self.cpu_median,
            "cpu_rounds": self.cpu,
        }


def paired_difference(series: Series, baseline: Series) -> float:
    """The median over rounds of (series - baseline) within each round."""
    return statistics.median(a - b for a, b in zip(series.values, baseline.values, strict=True))


def paired_ratio(series: Series, baseline: Series) -> float:
    """The median over rounds of (series / baseline) within each round."""
    return statistics.median(a / b for a, b in zip(series.values, baseline.values, strict=True))


def paired_noise(series: Series, baseline: Series) -> float:
    """The standard error of paired_ratio(): how far its median may be off, by the
    spread of the per-round ratios (1.2533 sigma / sqrt(rounds), sigma estimated
    from their interquartile range, as one disturbed round must not widen it)."""
    ratios = [a / b for a, b in zip(series.values, baseline.values, strict=True)]
    if len(ratios) < 4:
        return math.inf
    quartiles = statistics.quantiles(ratios, n=4)
    sigma = (quartiles[2] - quartiles[0]) / 1.349
    return 1.2533 * sigma / math.sqrt(len(ratios))


def make_keys(rng: random.Random, count: int, upper: int) -> list[int]:
    """``count`` random keys in 1..upper."""
    return [rng.randint(1, upper) for _ in range(count)]


def _record(
    results: dict[str, Series], variant: Variant[Any], elapsed_ns: int, cpu_ns: int, units: int
) -> None:
    series = results[variant.key]
    series.values.append(elapsed_ns / units / 1000)
    series.cpu.append(cpu_ns / units / 1000)


def run_interleaved(
    variants: Sequence[Variant[SyncBatch]],
    *,
    rounds: int,
    keys_for_round: Callable[[], Sequence[int]],
    warmup_keys: Sequence[int],
    rng: random.Random,
) -> dict[str, Series]:
    """Warm every variant up, then time ``rounds`` interleaved rounds (µs per unit)."""
    for variant in variants:
        variant.run(warmup_keys)
    results = {v.key: Series(v.key, v.label) for v in variants}
    for _ in range(rounds):
        keys = keys_for_round()  # the same keys for every variant of the round
        order = list(variants)
        rng.shuffle(order)
        for variant in order:
            gc.collect()  # every batch starts with the same garbage: none
            cpu = time.thread_time_ns()
            start = time.perf_counter_ns()
            variant.run(keys)
            elapsed = time.perf_counter_ns() - start
            _record(results, variant, elapsed, time.thread_time_ns() - cpu, len(keys))
    return results


async def run_interleaved_async(
    variants: Sequence[Variant[AsyncBatch]],
    *,
    rounds: int,
    keys_for_round: Callable[[], Sequence[int]],
    warmup_keys: Sequence[int],
    rng: random.Random,
) -> dict[str, Series]:
    """The async twin of :func:`run_interleaved`."""
    for variant in variants:
        await variant.run(warmup_keys)
    results = {v.key: Series(v.key, v.label) for v in variants}
    for _ in range(rounds):
        keys = keys_for_round()
        order = list(variants)
        rng.shuffle(order)
        for variant in order:
            gc.collect()
            cpu = time.thread_time_ns()
            start = time.perf_counter_ns()
            await variant.run(keys)
            elapsed = time.perf_counter_ns() - start
            _record(results, variant, elapsed, time.thread_time_ns() - cpu, len(keys))
    return results


@dataclasses.dataclass
class Budget:
    """One line of the budget table: a limit from docs/architecture.md and what was measured.

    A ratio may come with its noise (the standard error of its median, see
    paired_noise()): a measurement closer to the limit than that, on either side,
    is reported as "within noise", neither held nor missed: the run cannot tell.
    """

    name: str
    limit: str  # as shown, e.g. "<= 1.03x"
    measured: float | None  # None: not measured in this run
    unit: str  # "x" or "µs"
    holds: bool | None
    noise: float | None = None
    within_noise: bool = False

    @classmethod
    def at_most(
        cls, name: str, limit: float, measured: float | None, unit: str, noise: float | None = None
    ) -> Budget:
        holds = None if measured is None else measured <= limit
        if noise is not None and not math.isfinite(noise):
            noise = None  # too few rounds to say (paired_noise): a plain verdict
        tie = bool(measured is not None and noise and abs(measured - limit) <= noise)
        return cls(name, f"<= {_number(limit, unit)}", measured, unit, holds, noise, tie)

    @classmethod
    def at_least(cls, name: str, limit: float, measured: float | None, unit: str) -> Budget:
        holds = None if measured is None else measured >= limit
        return cls(name, f">= {_number(limit, unit)}", measured, unit, holds)

    @property
    def verdict(self) -> str:
        if self.within_noise:
            return "within noise"
        return {True: "holds", False: "MISSED", None: "not measured"}[self.holds]

    def row(self) -> list[str]:
        shown = "-" if self.measured is None else _number(self.measured, self.unit)
        if self.measured is not None and self.noise is not None:
            shown += f" ±{self.noise:.3f}"
        return [self.name, self.limit, shown, self.verdict]

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"verdict": self.verdict}


def _number(value: float, unit: str) -> str:
    if unit == "x":
        return f"{value:.3f}x"
    return f"{value:.0f} {unit}" if unit == "errors" else f"{value:.1f} {unit}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], indent: str = "  ") -> str:
    """A plain-text table: the first column left-aligned, the others right-aligned."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=True)]

    def line(cells: Sequence[str]) -> str:
        first, *rest = cells
        parts = [first.ljust(widths[0])]
        parts += [cell.rjust(width) for cell, width in zip(rest, widths[1:], strict=True)]
        return indent + "  ".join(parts).rstrip()

    rule = indent + "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])
