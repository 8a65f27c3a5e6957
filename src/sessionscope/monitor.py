"""``SessionMonitor``: what one manager's sessions, transactions and pool are doing.

Counters are updated under one lock, so figures from many threads and tasks
add up exactly; durations go into fixed-size histograms, so memory stays
constant however many transactions run. The two events every transaction has
(a session got its connection; it committed and closed) take no lock: they
append their duration to a short list (``list.append`` is atomic), folded
into the counters and histograms under the lock every ``_FOLD_AT`` events and
before anything is read. Taking the lock and placing a sample in a histogram
on each of them cost more than the rest of a scope's own code. Listeners receive every event as a
:class:`MonitorEvent` (the base for exporters). A manager with
``enable_monitoring=False`` never calls the recording methods at all: no
clock is read and no lock is taken.
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal, get_args

from ._histogram import Histogram

if TYPE_CHECKING:
    from ._frames import Level

__all__ = ["EVENT_KINDS", "ROLLBACK_CAUSES", "MonitorEvent", "RollbackCause", "SessionMonitor"]

logger = logging.getLogger("sessionscope")

EVENT_KINDS = (
    "session_opened",
    "session_closed",
    "connection_acquired",  # duration: the wait for a connection from the pool
    "committed",  # duration: the transaction's, from the session's opening to its commit
    "rolled_back",  # duration, reason (the cause), error
    "savepoint_opened",
    "savepoint_released",
    "savepoint_rolled_back",
    "retry",  # attempt, reason, error
    "commit_outcome_unknown",  # error
    "slow_transaction",  # duration
    # A decorated function's call, around its attempts (emitted only to listeners):
    "call_started",  # function
    "call_ended",  # function, error
)

# Pending samples folded into the histograms at once: bounds the lists' memory.
_FOLD_AT = 512

# Why a transaction was rolled back.
# ("requested": a ``sessionscope.Rollback`` left the scope.)
RollbackCause = Literal["exception", "requested", "rollback_only", "commit_failed", "not_committed"]
ROLLBACK_CAUSES: tuple[RollbackCause, ...] = get_args(RollbackCause)


@dataclasses.dataclass(frozen=True, slots=True)
class MonitorEvent:
    """One thing that happened, as listeners receive it."""

    kind: str
    manager: str
    transaction_id: int | None = None
    duration: float | None = None
    attempt: int | None = None
    reason: str | None = None
    error: BaseException | None = None
    # session_opened: what the transaction is (propagation: the owning scope's).
    read_only: bool | None = None
    isolation_level: str | None = None
    propagation: str | None = None
    # call_started, call_ended: the decorated function's qualified name.
    function: str | None = None


Listener = Callable[[MonitorEvent], object]


class SessionMonitor:
    """Metrics of one manager. ``snapshot()`` returns them as a JSON-serialisable dict."""

    def __init__(self, name: str, pool: Callable[[], Any] | None = None, enabled: bool = True):
        self.name = name
        self.enabled = enabled
        self._pool = pool
        self._lock = threading.Lock()
        self._listeners: tuple[Listener, ...] = ()
        # Waits of sessions that got their connection; durations of committed ones.
        self._pending_waits: list[float] = []
        self._pending_commits: list[float] = []
        # Per-engine figures of a manager with replicas (its _engine_figures) and what
        # sets their counters back to zero, else None.
        self.engines: Callable[[], list[dict[str, Any]]] | None = None
        self.reset_engines: Callable[[], None] | None = None
        self.reset()

    def reset(self) -> None:
        """Set every counter and histogram back to zero (pool figures are always live)."""
        with self._lock:
            self._pending_waits.clear()
            self._pending_commits.clear()
            self._counts: dict[str, int] = dict.fromkeys(EVENT_KINDS, 0)
            self._rollback_causes: dict[str, int] = dict.fromkeys(ROLLBACK_CAUSES, 0)
            self._retry_reasons: dict[str, int] = {}
            self._errors: dict[str, int] = {}
            self._durations = Histogram()
            self._waits = Histogram()
        if self.reset_engines is not None:
            self.reset_engines()

    # -- listeners ---------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(event)`` for every event, in the thread or task that caused it.

        Listeners run in the hot path of every transaction: keep them quick. A
        coroutine function is refused (nothing would await it there); from
        async code, hand events to a queue instead, e.g.
        ``monitor.add_listener(queue.put_nowait)`` with an ``asyncio.Queue``
        consumed by a task of yours. A listener that raises is logged and the
        transaction goes on.
        """
        if not callable(listener):
            raise TypeError(f"add_listener() takes a callable, got {listener!r}")
        if inspect.iscoroutinefunction(listener):
            raise TypeError(
                f"{listener!r} is a coroutine function: listeners are called, never awaited; "
                "pass a plain function (e.g. an asyncio.Queue's put_nowait)"
            )
        with self._lock:
            self._listeners = (*self._listeners, listener)

    def remove_listener(self, listener: Listener) -> None:
        with self._lock:
            if listener not in self._listeners:
                raise ValueError(f"{listener!r} is not a listener of this monitor")
            remaining = list(self._listeners)
            remaining.remove(listener)
            self._listeners = tuple(remaining)

    def _emit(self, kind: str, **fields: Any) -> None:
        event = MonitorEvent(kind, self.name, **fields)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                logger.exception("[%s] monitor listener %r failed", self.name, listener)

    # -- recording: called by the manager's scopes when monitoring is enabled ----------

    def _count(self, kind: str) -> None:
        with self._lock:
            self._counts[kind] += 1

    def session_closed(self, transaction_id: int) -> None:
        """A session closed whose transaction's outcome is unknown (see
        ``commit_outcome_unknown``); ``closed()`` counts the others."""
        self._count("session_closed")
        if self._listeners:
            self._emit("session_closed", transaction_id=transaction_id)

    def _rolled_back(
        self,
        duration: float,
        transaction_id: int,
        cause: RollbackCause,
        error: BaseException | None,
    ) -> None:
        """``cause`` is one of ``ROLLBACK_CAUSES``; ``error`` what caused it, if anything."""
        with self._lock:
            self._fold_locked()  # the waits of transactions that never commit
            self._counts["rolled_back"] += 1
            self._rollback_causes[cause] += 1
            self._durations.add(duration)
            if error is not None:
                name = type(error).__qualname__
                self._errors[name] = self._errors.get(name, 0) + 1
        if self._listeners:
            self._emit(
                "rolled_back",
                transaction_id=transaction_id,
                duration=duration,
                reason=cause,
                error=error,
            )

    # Each event site of a scope makes one call, and the monitor decides what it costs.
    # The two calls of a transaction's usual life take no lock: see the module's docstring.

    def connected(self, wait: float, level: Level, propagation: str | None = None) -> None:
        """``session_opened`` and ``connection_acquired`` at once, once a session has its
        connection for the transaction ``level`` (``session_opened`` carries the wait
        too: the transaction began that long ago)."""
        pending = self._pending_waits
        pending.append(wait)
        if len(pending) >= _FOLD_AT:
            self._fold()
        if self._listeners:
            transaction_id = level.transaction_id
            self._emit(
                "session_opened",
                transaction_id=transaction_id,
                duration=wait,
                read_only=level.read_only,
                isolation_level=level.isolation_level,
                propagation=propagation,
            )
            self._emit("connection_acquired", transaction_id=transaction_id, duration=wait)

    @property
    def listened(self) -> bool:
        """Whether any listener is there (a decorated call then reports its start and end)."""
        return bool(self._listeners)

    def call_started(self, function: str) -> None:
        self._emit("call_started", function=function)

    def call_ended(self, function: str, error: BaseException | None) -> None:
        self._emit("call_ended", function=function, error=error)

    def closed(
        self,
        duration: float,
        transaction_id: int,
        cause: RollbackCause | None = None,
        error: BaseException | None = None,
    ) -> None:
        """``session_closed`` and then ``committed`` (``cause`` None) or ``rolled_back``."""
        if cause is not None:
            self.session_closed(transaction_id)
            self._rolled_back(duration, transaction_id, cause, error)
            return
        self._pending_commits.append(duration)
        # Every commit had a wait: the waits' list is the longer one (but for
        # sessions still open), and scopes append to it without looking.
        if len(self._pending_waits) >= _FOLD_AT:
            self._fold()
        if self._listeners:
            self._emit("session_closed", transaction_id=transaction_id)
            self._emit("committed", transaction_id=transaction_id, duration=duration)

    def _fold(self) -> None:
        with self._lock:
            self._fold_locked()

    def _fold_locked(self) -> None:
        """Move the pending samples into the counters and histograms (lock held).

        Only a folder pops, and one folds at a time; samples appended meanwhile
        stay for the next fold, none is lost or counted twice.
        """
        counts = self._counts
        connected = self._waits.add_popped(self._pending_waits)
        counts["session_opened"] += connected
        counts["connection_acquired"] += connected
        committed = self._durations.add_popped(self._pending_commits)
        counts["session_closed"] += committed
        counts["committed"] += committed

    def connect_failed(self, error: BaseException, transaction_id: int) -> None:
        """A session could not get its connection: no session was opened, one error."""
        name = type(error).__qualname__
        with self._lock:
            self._errors[name] = self._errors.get(name, 0) + 1

    def savepoint(self, event: str, transaction_id: int | None) -> None:
        """``event`` is ``"opened"``, ``"released"`` or ``"rolled_back"``."""
        kind = "savepoint_" + event
        self._count(kind)
        if self._listeners:
            self._emit(kind, transaction_id=transaction_id)

    def retried(self, reason: str, attempt: int, error: BaseException) -> None:
        with self._lock:
            self._counts["retry"] += 1
            self._retry_reasons[reason] = self._retry_reasons.get(reason, 0) + 1
        if self._listeners:
            self._emit("retry", attempt=attempt, reason=reason, error=error)

    def commit_outcome_unknown(self, error: BaseException, transaction_id: int) -> None:
        name = type(error).__qualname__
        with self._lock:
            self._counts["commit_outcome_unknown"] += 1
            self._errors[name] = self._errors.get(name, 0) + 1
        if self._listeners:
            self._emit("commit_outcome_unknown", transaction_id=transaction_id, error=error)

    def slow_transaction(self, duration: float, transaction_id: int) -> None:
        self._count("slow_transaction")
        if self._listeners:
            self._emit("slow_transaction", transaction_id=transaction_id, duration=duration)

    # -- reading -----------------------------------------------------------------------

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
        """Every figure, as plain numbers, strings and dicts (``json.dumps`` takes it)."""
        with self._lock:
            self._fold_locked()
            counts = dict(self._counts)
            causes = dict(self._rollback_causes)
            reasons = dict(self._retry_reasons)
            errors = dict(self._errors)
            durations = self._durations.summary()
            waits = self._waits.summary()
        return {
            "manager": self.name,
            "enabled": self.enabled,
            "sessions": {
                "opened": counts["session_opened"],
                "closed": counts["session_closed"],
                "active": counts["session_opened"] - counts["session_closed"],
            },
            "transactions": {
                "committed": counts["committed"],
                "rolled_back": counts["rolled_back"],
                "rolled_back_by_cause": causes,
                "slow": counts["slow_transaction"],
            },
            "savepoints": {
                "opened": counts["savepoint_opened"],
                "released": counts["savepoint_released"],
                "rolled_back": counts["savepoint_rolled_back"],
            },
            "retries": {"total": counts["retry"], "by_reason": reasons},
            "commit_outcome_unknown": counts["commit_outcome_unknown"],
            "errors": errors,
            "transaction_duration": durations,
            "connection_wait": waits,
            "pool": self.pool_status(),
            "engines": self._engine_figures(counts["session_opened"]),
        }

    def _engine_figures(self, opened: int) -> list[dict[str, Any]]:
        """Role, scopes routed, fallbacks and lag per engine, with replicas; else none."""
        if self.engines is None:
            return []
        figures = self.engines()
        on_replicas = sum(f["routed"] for f in figures if f["role"] == "replica")
        for figure in figures:
            if figure["role"] == "primary":
                figure["routed"] = max(0, opened - on_replicas) if self.enabled else None
        return figures

    def histograms(self) -> dict[str, Histogram]:
        """Copies of the duration histograms, for exporters that publish buckets."""
        with self._lock:
            self._fold_locked()
            return {
                "transaction_duration": self._durations.copy(),
                "connection_wait": self._waits.copy(),
            }
