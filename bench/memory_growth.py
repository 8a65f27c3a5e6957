"""Section "memory": does memory stay flat over many scopes (monitoring on)?

Sync scopes around ``SELECT 1`` on in-memory SQLite. After a warm-up (caches
filled, the histograms' buckets made), two passes of the same number of
scopes: one reads the resident set size before and after (``/proc/self/statm``),
the other traces allocations with ``tracemalloc`` (slower, so kept apart)
and reports the bytes still allocated at the end, and over its second half
alone (a leak grows there too; one-off allocations are over by then), with
the source lines that hold most of them.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import resource
import time
import tracemalloc
from typing import Any

from sqlalchemy import text
from sqlalchemy.pool import StaticPool

from sessionscope import SessionConfig, SessionManager

__all__ = ["MemoryResult", "run_memory"]

SELECT_1 = text("SELECT 1")
TOP_LINES = 5


@dataclasses.dataclass
class MemoryResult:
    scopes: int
    warmup: int
    rss_before: int
    rss_after: int
    traced_growth: int
    second_half_growth: int  # one-off allocations (caches, a dict resizing) are over by then
    top_lines: list[str]
    seconds_per_pass: float
    committed: int

    @property
    def rss_growth(self) -> int:
        return self.rss_after - self.rss_before

    def report(self) -> str:
        lines = [
            f"  {self.scopes:,} scopes after a warm-up of {self.warmup:,} "
            f"({self.seconds_per_pass:.1f} s untraced)",
            f"  RSS:         {_kib(self.rss_before)} -> {_kib(self.rss_after)} "
            f"(growth {self.rss_growth:+,} bytes, {self.rss_growth / self.scopes:+.2f} per scope)",
            f"  tracemalloc: {self.traced_growth:+,} bytes more allocated at the end "
            f"({self.traced_growth / self.scopes:+.3f} per scope),",
            f"               of which over the second half {self.second_half_growth:+,} bytes "
            f"({self.second_half_growth / (self.scopes - self.scopes // 2):+.3f} per scope)",
        ]
        if self.top_lines:
            lines.append("  where the traced bytes are (top lines):")
            lines += [f"    {line}" for line in self.top_lines]
        return "\n".join(lines)

    def as_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self) | {"rss_growth": self.rss_growth}


def rss_bytes() -> int:
    """The resident set size now (Linux: /proc/self/statm; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm") as statm:
            resident_pages = int(statm.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_memory(scopes: int, warmup: int) -> MemoryResult:
    manager = SessionManager(
        "sqlite://", config=SessionConfig(enable_monitoring=True), poolclass=StaticPool
    )

    def run(count: int) -> None:
        for _ in range(count):
            with manager.session_scope() as session:
                session.execute(SELECT_1).scalar_one()

    try:
        run(warmup)
        gc.collect()
        rss_before = rss_bytes()
        start = time.perf_counter()
        run(scopes)
        seconds = time.perf_counter() - start
        gc.collect()
        rss_after = rss_bytes()

        tracemalloc.start(1)
        try:
            gc.collect()
            before = tracemalloc.take_snapshot()
            traced_before = tracemalloc.get_traced_memory()[0]
            run(scopes // 2)
            gc.collect()
            traced_middle = tracemalloc.get_traced_memory()[0]
            run(scopes - scopes // 2)
            gc.collect()
            traced_end = tracemalloc.get_traced_memory()[0]
            traced_growth = traced_end - traced_before
            second_half_growth = traced_end - traced_middle
            after = tracemalloc.take_snapshot()
        finally:
            tracemalloc.stop()
        ignore = [tracemalloc.Filter(False, tracemalloc.__file__)]
        differences = after.filter_traces(ignore).compare_to(before.filter_traces(ignore), "lineno")
        top = [str(d) for d in differences if d.size_diff > 0][:TOP_LINES]
        committed = manager.monitor.snapshot()["transactions"]["committed"]
    finally:
        manager.dispose()
    expected = warmup + 2 * scopes
    if committed != expected:
        raise RuntimeError(f"memory: {committed} transactions committed, {expected} expected")
    return MemoryResult(
        scopes,
        warmup,
        rss_before,
        rss_after,
        traced_growth,
        second_half_growth,
        top,
        seconds,
        committed,
    )


def _kib(value: int) -> str:
    return f"{value / 1024:,.0f} KiB"
