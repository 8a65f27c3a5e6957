"""A fixed-size log-bucketed histogram: constant memory whatever the number of samples."""

from __future__ import annotations

import math

__all__ = ["Histogram"]

# Buckets grow by 4% from 1 µs, so a percentile is off by at most ~2%;
# 600 buckets reach past 10 000 s, anything longer lands in the last one.
_GROWTH = 1.04
_SMALLEST = 1e-6
_BUCKETS = 600
_LOG_GROWTH = math.log(_GROWTH)
_log = math.log


class Histogram:
    __slots__ = ("buckets", "count", "max", "total")

    def __init__(self) -> None:
        self.buckets = [0] * _BUCKETS
        self.count = 0
        self.total = 0.0
        self.max = 0.0

    def add(self, seconds: float) -> None:
        self.add_popped([seconds])

    def add_popped(self, samples: list[float]) -> int:
        """Add every sample of ``samples``, popping each (the list ends empty); how many."""
        buckets = self.buckets
        largest = self.max
        total = 0.0
        count = 0
        while samples:
            seconds = samples.pop()
            index = 1 + int(_log(seconds / _SMALLEST) / _LOG_GROWTH) if seconds > _SMALLEST else 0
            buckets[index if index < _BUCKETS else _BUCKETS - 1] += 1
            total += seconds
            count += 1
            if seconds > largest:
                largest = seconds
        self.count += count
        self.total += total
        self.max = largest
        return count

    def copy(self) -> Histogram:
        twin = Histogram()
        twin.buckets = list(self.buckets)
        twin.count, twin.total, twin.max = self.count, self.total, self.max
        return twin

    def count_at_most(self, bound: float) -> int:
        """How many samples were at most ``bound`` (to within one bucket, ~4%)."""
        if bound <= _SMALLEST:
            return self.buckets[0]
        last = min(_BUCKETS - 1, int(math.log(bound / _SMALLEST) / _LOG_GROWTH))
        return sum(self.buckets[: last + 1])

    def percentile(self, fraction: float) -> float:
        """The upper bound of the bucket holding the given fraction of samples."""
        if not self.count:
            return 0.0
        rank = max(1, math.ceil(fraction * self.count))
        seen = 0
        for index, n in enumerate(self.buckets):
            seen += n
            if seen >= rank:
                return min(self.max, _SMALLEST * _GROWTH**index)
        return self.max

    def summary(self) -> dict[str, float]:
        return {
            "count": self.count,
            "mean": self.total / self.count if self.count else 0.0,
            "p50": self.percentile(0.50),
            "p95": self.percentile(0.95),
            "p99": self.percentile(0.99),
            "max": self.max,
        }
