"""``SessionMonitor``: what one manager's sessions, transactions and pool are doing.

Counters are updated under one lock, so figures from many threads and tasks
add up exactly; durations go into fixed-size histograms, so memory stays
constant however many transactions run. A manager with
``enable_monitoring=False`` never calls the recording methods at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from ._histogram import Histogram

__all__ = ["SessionMonitor"]

_COUNTERS = (
    "sessions_opened",
    "sessions_closed",
    "committed",
    "rolled_back",
    "savepoints_opened",
    "savepoints_released",
    "savepoints_rolled_back",
    "retries",
    "commit_outcome_unknown",
)


class SessionMonitor:
    """Metrics of one manager. ``snapshot()`` returns them as a JSON-serialisable dict."""

    def __init__(self, name: str, pool: Callable[[], Any] | None = None, enabled: bool = True):
        self.name = name
        self.enabled = enabled
        self._pool = pool
        self._lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Set every counter and histogram back to zero (pool figures are always live)."""
        with self._lock:
            self._counts = dict.fromkeys(_COUNTERS, 0)
            self._errors: dict[str, int] = {}
            self._retry_reasons: dict[str, int] = {}
            self._durations = Histogram()

    # Recording, called by scopes of the manager (only when monitoring is enabled).

    def session_opened(self) -> None:
        with self._lock:
            self._counts["sessions_opened"] += 1

    def session_closed(self) -> None:
        with self._lock:
            self._counts["sessions_closed"] += 1

    def transaction_ended(self, committed: bool, duration: float) -> None:
        with self._lock:
            self._counts["committed" if committed else "rolled_back"] += 1
            self._durations.add(duration)

    def savepoint(self, event: str) -> None:
        """``event`` is ``"opened"``, ``"released"`` or ``"rolled_back"``."""
        with self._lock:
            self._counts["savepoints_" + event] += 1

    def retried(self, reason: str) -> None:
        with self._lock:
            self._counts["retries"] += 1
            self._retry_reasons[reason] = self._retry_reasons.get(reason, 0) + 1

    def commit_outcome_unknown(self, exc: BaseException) -> None:
        name = type(exc).__qualname__
        with self._lock:
            self._counts["commit_outcome_unknown"] += 1
            self._errors[name] = self._errors.get(name, 0) + 1

    def error(self, exc: BaseException) -> None:
        name = type(exc).__qualname__
        with self._lock:
            self._errors[name] = self._errors.get(name, 0) + 1

    # Reading.

    def pool_status(self) -> dict[str, int | None]:
        """The pool's size, checked-in, checked-out and overflow, read live."""
        pool = self._pool() if self._pool is not None else None

        def figure(method: str) -> int | None:
            read = getattr(pool, method, None)
            return int(read()) if callable(read) else None

        overflow = figure("overflow")
        return {
            "size": figure("size"),
            "checked_in": figure("checkedin"),
            "checked_out": figure("checkedout"),
            # QueuePool counts from -size until the pool is full; overflow starts above it.
            "overflow": None if overflow is None else max(0, overflow),
        }

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            counts = dict(self._counts)
            errors = dict(self._errors)
            retry_reasons = dict(self._retry_reasons)
            durations = self._durations.summary()
        return {
            "manager": self.name,
            "enabled": self.enabled,
            "sessions": {
                "opened": counts["sessions_opened"],
                "closed": counts["sessions_closed"],
                "active": counts["sessions_opened"] - counts["sessions_closed"],
            },
            "transactions": {
                "committed": counts["committed"],
                "rolled_back": counts["rolled_back"],
            },
            "savepoints": {
                "opened": counts["savepoints_opened"],
                "released": counts["savepoints_released"],
                "rolled_back": counts["savepoints_rolled_back"],
            },
            "retries": {"total": counts["retries"], "by_reason": retry_reasons},
            "commit_outcome_unknown": counts["commit_outcome_unknown"],
            "errors": errors,
            "transaction_duration": durations,
            "pool": self.pool_status(),
        }
