"""What differs between the flavours, sync side: the hand-written half of a pair.

Generated ``_sync/`` code imports these where ``_async/`` code imports
``_async_compat``. Nothing here may import ``sqlalchemy.ext.asyncio``: the sync
flavour must work with SQLAlchemy installed without greenlet.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import IllegalStateChangeError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from ._frames import owner_here

__all__ = [
    "IS_ASYNC",
    "Connection",
    "Engine",
    "Outcome",
    "ScopeHolder",
    "Session",
    "Turns",
    "call_maybe_async",
    "close_if_idle",
    "guarded_session_class",
    "has_pending_changes",
    "SessionTransaction",
    "create_engine",
    "current_owner",
    "is_flavour_function",
    "deadline_guard",
    "listen_session_events",
    "other_flavour",
    "run_callbacks",
    "run_on_connection",
    "running_loop",
    "run_shielded",
    "sessionmaker",
    "sleep",
    "sync_engine_of",
    "take_connection",
]

IS_ASYNC = False

_R = TypeVar("_R")
Outcome = Annotated[_R, "returned as is"]
"""What calling a decorated function returns: its own result in this flavour."""

sleep = time.sleep


def guarded_session_class(cls: type[Session]) -> type[Session]:
    """Sync sessions are used by one thread at a time by construction: no guard."""
    return cls


def listen_session_events(
    maker: sessionmaker[Any], listeners: Mapping[str, Callable[..., Any]]
) -> None:
    """Listen to SQLAlchemy's session events (by name) on the sessions ``maker``
    makes: a sessionmaker gives its sessions a class of their own, so no others."""
    for name, listener in listeners.items():
        event.listen(maker, name, listener)


class ScopeHolder:
    """Mixed into the manager's session classes: ``_sessionscope_scope``, the innermost
    scope using the session (SQLAlchemy's session events find it there too)."""

    _sessionscope_scope: Any = None


class Turns:
    """One outermost scope at a time, for a pool whose every session gets the same
    connection (in-memory SQLite): their transactions would interleave on it.

    ``take()`` returns False when it waited ``timeout`` (the pool's) in vain: raise
    ``timed_out()`` then. Both ends are the lock's own methods: no Python-level call.
    """

    __slots__ = ("give_back", "holder", "take", "timeout", "why")

    def __init__(self, timeout: float, why: str | None = None) -> None:
        lock = threading.Lock()
        self.timeout = timeout
        self.why = why  # what the wait is for, if not an in-memory database's connection
        self.holder: object = None  # the task or thread whose scope has the turn
        self.take: Callable[[], bool] = functools.partial(lock.acquire, True, timeout)
        self.give_back: Callable[[], None] = lock.release

    def timed_out(self) -> Exception:
        # As a pool without a free connection says; also the way out of a wait for
        # a turn the waiting thread itself holds (sync scopes of asyncio tasks
        # interleaving in one thread).
        if self.why is not None:
            return PoolTimeoutError(f"waited {self.timeout} s for {self.why}")
        return PoolTimeoutError(
            f"waited {self.timeout} s for the only connection of an in-memory SQLite "
            "database: another scope of the manager holds it (maybe in this very "
            "thread, in another asyncio task: use the AsyncSessionManager there)"
        )


def has_pending_changes(session: Session) -> bool:
    """Whether a flush would write anything: SQLAlchemy's own test (``_is_clean()``)
    read directly, as it runs on every COMMIT; ``new``, ``dirty`` and ``deleted``
    would build three sets to say so. tests/test_private_api.py guards the names."""
    sync = session
    return bool(sync._new or sync._deleted or sync.identity_map._modified)


def take_connection(session: Session) -> Connection:
    """The session's connection, taken now (its transaction begun)."""
    return session.connection()


def close_if_idle(session: Session) -> bool:
    """Close ``session`` now if it holds no connection (as after a COMMIT); False if not."""
    if session._transaction is not None:  # in_transaction(), without the call
        return False
    try:
        # SQLAlchemy's own close(), not the body's (see _sync/session.py).
        session._sessionscope_unscoped.close(session)  # type: ignore[attr-defined]
    except IllegalStateChangeError:
        return False  # another thread is inside it: the careful way
    return True


# Who opens a scope: the running asyncio task, else the thread (see _frames.py).
current_owner = owner_here


def sync_engine_of(engine: Engine) -> Engine:
    return engine


def is_flavour_function(fn: Callable[..., Any]) -> bool:
    return not (
        inspect.iscoroutinefunction(fn)
        or inspect.isasyncgenfunction(fn)
        or inspect.iscoroutinefunction(getattr(fn, "__call__", None))  # noqa: B004
    )


def other_flavour(bind: object) -> str | None:
    """The manager to use instead, if ``bind`` belongs to the async flavour.

    Checked by module name: importing sqlalchemy.ext.asyncio needs greenlet.
    """
    for cls in type(bind).__mro__:
        if cls.__module__.startswith("sqlalchemy.ext.asyncio"):
            return "AsyncSessionManager"
    return None


def run_shielded(cleanup: Callable[..., _R], *args: Any) -> _R:
    """Nothing can interrupt sync cleanup half-way the way cancellation does: just run it."""
    return cleanup(*args)


def call_maybe_async(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn`` (coroutine functions are refused where they are registered)."""
    return fn(*args, **kwargs)


def run_callbacks(callbacks: Iterable[Callable[[], Any]], log: Callable[..., None]) -> None:
    """Run on_commit/on_rollback callbacks; one failing does not stop the others."""
    for callback in callbacks:
        try:
            callback()
        except Exception:
            log(logging.ERROR, "callback %r failed", callback, exc_info=True)


def run_on_connection(connection: Connection, fn: Callable[[Connection], _R]) -> _R:
    """Run ``fn`` with ``connection`` (the async twin hands it the sync one)."""
    return fn(connection)


def deadline_guard(seconds: float) -> Any:
    """A sync scope cannot be stopped from outside: the deadline bounds it on the
    server (statement timeouts capped to it), and between attempts."""
    return None


def running_loop() -> object:
    """Sync connections belong to no event loop."""
    return None
