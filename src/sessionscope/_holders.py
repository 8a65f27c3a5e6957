"""Who holds the pool: the scopes holding a manager's connections, and where they are.

With monitoring on, a manager keeps the scopes that hold one of its
connections (from the moment they get it to their COMMIT or ROLLBACK) in
``manager._holders``, and those waiting for one in ``manager._waiting``: dict
insertions and removals per scope, nothing more. A watchdog thread of the
manager looks at them a few times per threshold:

- ``slow_checkout_seconds``: a scope has waited that long for a connection:
  one WARNING lists the scopes holding this manager's connections, longest
  first, at most once per ``_EVERY`` seconds;
- ``idle_scope_seconds`` (off by default): a scope has held its connection
  that long without a statement: one WARNING says where it is. The usual
  cause is an await of something slow (an HTTP call) inside a transaction,
  found before the pool runs dry.

Where a scope is is found only then, on the stack of its task or thread: the
outermost frame that has the scope's session in its local variables is the
code that opened the scope (or was handed its session), shown at the line it
is running now. Reading another thread's or a suspended task's frames is what
debuggers do; nothing is changed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import sys
import threading
import time
import weakref
from collections.abc import Iterator
from types import FrameType
from typing import Any

__all__ = [
    "Watchdog",
    "acquired",
    "describe",
    "statement_ended",
    "statement_failed",
    "statement_started",
]

logger = logging.getLogger("sessionscope")

_EVERY = 30.0  # seconds between two slow-checkout warnings of one manager
_LISTED = 20  # holders listed at most
_ACTIVITY = "sessionscope_last_statement"  # in a pooled connection's info


def _warn_slow_checkout(manager: Any, waiter: Any, now: float) -> None:
    holders = sorted(list(manager._holders), key=lambda holder: holder._started)
    lines = [describe(holder, now) for holder in holders[:_LISTED]]
    if len(holders) > _LISTED:
        lines.append(f"... and {len(holders) - _LISTED} more")
    manager._log(
        logging.WARNING,
        "slow checkout: a scope has waited %.3f s for a connection (slow_checkout_seconds=%s,"
        " pool %s); %d scope(s) of this manager hold connections:%s",
        now - waiter._started,
        manager.config.slow_checkout_seconds,
        manager.monitor.pool_status(),
        len(holders),
        "".join("\n  " + line for line in lines)
        or " none: opening a new connection is what takes that long (or another user of "
        "the engine holds them)",
    )


def describe(holder: Any, now: float) -> str:
    """``opened in <function> at <file>:<line now>, held for <seconds> s``."""
    return f"opened in {where(holder)}, held for {now - holder._started:.3f} s"


def where(holder: Any) -> str:
    session = holder.session
    found: FrameType | None = None
    for frame in _stack(holder.owner):  # outermost first
        if _holds(frame, session):
            found = frame
            break
    if found is None and holder.owner is None:
        # Made current by hand elsewhere (a sync FastAPI dependency): any thread.
        for top in sys._current_frames().values():
            found = next((f for f in reversed(_walk(top)) if _holds(f, session)), None)
            if found is not None:
                break
    if found is None:
        return "(somewhere not on its stack now)"
    code = found.f_code
    return f"{code.co_qualname} at {code.co_filename}:{found.f_lineno}"


def _holds(frame: FrameType, session: object) -> bool:
    try:
        return any(value is session for value in frame.f_locals.values())
    except Exception:  # a frame that went away meanwhile
        return False


def _walk(frame: FrameType | None) -> list[FrameType]:
    """A frame and its callers, innermost first."""
    frames = []
    while frame is not None:
        frames.append(frame)
        frame = frame.f_back
    return frames


def _stack(owner: object) -> list[FrameType]:
    """The frames of a thread (by ident) or an asyncio task, outermost first."""
    if isinstance(owner, int):
        return _walk(sys._current_frames().get(owner))[::-1]
    if isinstance(owner, asyncio.Task):
        return list(_coroutine_frames(owner.get_coro()))
    return []


def _coroutine_frames(coroutine: Any) -> Iterator[FrameType]:
    """A suspended coroutine's frames: its own, then those of what it awaits."""
    for _ in range(200):
        if coroutine is None:
            return
        frame = getattr(coroutine, "cr_frame", None) or getattr(coroutine, "gi_frame", None)
        if frame is not None:
            yield frame
        coroutine = getattr(coroutine, "cr_await", None) or getattr(coroutine, "gi_yieldfrom", None)


def statement_started(conn: Any, *args: Any) -> None:
    """``before_cursor_execute``: busy until it ends (for the idle watch)."""
    conn.info[_ACTIVITY] = math.inf


def statement_ended(conn: Any, *args: Any) -> None:
    """``after_cursor_execute``: the connection was used until now."""
    conn.info[_ACTIVITY] = time.perf_counter()


def statement_failed(context: Any) -> None:
    """``handle_error``: the statement ended, badly."""
    if context.connection is not None:
        context.connection.info[_ACTIVITY] = time.perf_counter()


def acquired(info: Any) -> None:
    """The scope got its connection now: idle from here until its first statement."""
    info[_ACTIVITY] = time.perf_counter()


class Watchdog:
    """What one manager's scopes are watched for; one thread (``_Thread``) watches the
    watchdogs of every manager."""

    def __init__(self, manager: Any, slow: float | None, idle: float | None) -> None:
        self._manager = weakref.ref(manager)
        self.slow = math.inf if slow is None else slow
        self.idle = math.inf if idle is None else idle
        self.period = min(1.0, max(0.01, min(self.slow, self.idle) / 4))
        self.running = False  # registered with the thread
        self._warned: set[int] = set()  # ids of idle holders warned of, while they hold
        self._next_checkout_warning = 0.0
        self._next_look = 0.0

    def start(self) -> None:
        """Watched from the first scope on (again after ``stop()`` or a fork)."""
        _THREAD.watch(self)
        self.running = True

    def stop(self) -> None:
        """No longer watched (the manager was disposed); a later scope starts it again."""
        self.running = False
        _THREAD.forget(self)

    def forked(self) -> None:
        """In a forked child: the thread stayed in the parent."""
        self.running = False
        self._warned.clear()

    def look(self, now: float) -> float:
        """Look if it is time; when to look next (inf: the manager is gone)."""
        manager = self._manager()
        if manager is None:
            return math.inf
        if now >= self._next_look:
            self._next_look = now + self.period
            try:
                self._look(manager, now)
            except Exception:
                logger.exception("[%s] sessionscope's watchdog failed", manager.name)
        return self._next_look

    def _look(self, manager: Any, now: float) -> None:
        if now >= self._next_checkout_warning:
            waited = [w for w in list(manager._waiting) if now - w._started >= self.slow]
            if waited:
                self._next_checkout_warning = now + _EVERY
                _warn_slow_checkout(manager, max(waited, key=lambda w: now - w._started), now)
        if self.idle == math.inf:
            return
        holders = list(manager._holders)
        self._warned &= {id(holder) for holder in holders}
        for holder in holders:
            info = holder._activity
            # The last statement's end, or when the connection was had; inf while one runs.
            last = info.get(_ACTIVITY, now) if info is not None else now
            if now - last >= self.idle and id(holder) not in self._warned:
                self._warned.add(id(holder))
                manager._log(
                    logging.WARNING,
                    "idle scope: it has held its connection for %.3f s without a statement "
                    "(idle_scope_seconds=%s): %s",
                    now - last,
                    manager.config.idle_scope_seconds,
                    describe(holder, now),
                    transaction_id=holder.level.transaction_id,
                )


class _Thread:
    """The one daemon thread that looks at every manager's watchdog, each as often as
    its thresholds ask; it ends when there is nothing left to watch."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._watched: set[Watchdog] = set()
        self._wake = threading.Event()
        self._thread: threading.Thread | None = None

    def watch(self, watchdog: Watchdog) -> None:
        with self._lock:
            self._watched.add(watchdog)
            if self._thread is None or not self._thread.is_alive():
                thread = threading.Thread(target=self._run, name="sessionscope-watchdog")
                thread.daemon = True
                try:
                    thread.start()
                except RuntimeError:  # no new threads (interpreter shutdown): no warnings
                    self._watched.discard(watchdog)
                    return
                self._thread = thread
        self._wake.set()

    def forget(self, watchdog: Watchdog) -> None:
        with self._lock:
            self._watched.discard(watchdog)

    def forked(self) -> None:
        self._lock = threading.Lock()
        self._watched = set()
        self._thread = None

    def _run(self) -> None:
        while True:
            with self._lock:
                watched = list(self._watched)
            if not watched:
                with self._lock:
                    if not self._watched:
                        self._thread = None
                        return
                continue
            now = time.perf_counter()
            next_look = math.inf
            for watchdog in watched:
                when = watchdog.look(now)
                if when == math.inf:
                    self.forget(watchdog)
                next_look = min(next_look, when)
            self._wake.wait(max(0.005, min(next_look, now + 1.0) - time.perf_counter()))
            self._wake.clear()


_THREAD = _Thread()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_THREAD.forked)
