"""What differs between the flavours, async side: the hand-written half of a pair.

``_async/`` code imports every async-only name from here; the generator maps
``_async_compat`` to ``_sync_compat``, whose names are the sync twins. This is
the only module of the async flavour that imports ``sqlalchemy.ext.asyncio`` (with
``_one_task.py``, which only it imports).
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, event
from sqlalchemy.exc import IllegalStateChangeError, MissingGreenlet
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.util import greenlet_spawn

from . import _one_task
from ._one_task import guarded_session_class

# SQLAlchemy 2.0 imports greenlet only when an async call is made: import it
# here so that a missing greenlet fails at import, where the install hint is given.
importlib.import_module("greenlet")

__all__ = [
    "IS_ASYNC",
    "AsyncConnection",
    "AsyncEngine",
    "AsyncSession",
    "AsyncSessionTransaction",
    "Outcome",
    "ScopeHolder",
    "Turns",
    "async_sessionmaker",
    "call_maybe_async",
    "close_if_idle",
    "guarded_session_class",
    "has_pending_changes",
    "create_async_engine",
    "current_owner",
    "is_flavour_function",
    "deadline_guard",
    "listen_session_events",
    "other_flavour",
    "run_callbacks",
    "run_on_connection",
    "running_loop",
    "run_shielded",
    "sleep",
    "sync_engine_of",
    "take_connection",
]

IS_ASYNC = True

_R = TypeVar("_R")
Outcome = Coroutine[Any, Any, _R]
"""What calling a decorated function returns: a coroutine in this flavour."""

sleep = asyncio.sleep


def listen_session_events(
    maker: async_sessionmaker[Any], listeners: Mapping[str, Callable[..., Any]]
) -> None:
    """Listen to SQLAlchemy's session events (by name) on the sessions ``maker``
    makes, and on no others: their sync sessions get a class of their own."""
    base = maker.kw.get("sync_session_class") or maker.class_.sync_session_class
    # The sync session is where the listeners find the scope: see ScopeHolder.
    namespace = {"__module__": base.__module__, "_sessionscope_scope": None}
    own = type(base.__name__, (base,), namespace)
    maker.configure(sync_session_class=own)
    for name, listener in listeners.items():
        event.listen(own, name, listener)


class ScopeHolder:
    """Mixed into the manager's session classes: ``_sessionscope_scope``, the innermost
    scope using the session. An AsyncSession keeps it on its sync session, where
    SQLAlchemy's session events (which run on that one) find it too."""

    __slots__ = ()
    sync_session: Session

    @property
    def _sessionscope_scope(self) -> Any:
        return self.sync_session._sessionscope_scope  # type: ignore[attr-defined]

    @_sessionscope_scope.setter
    def _sessionscope_scope(self, scope: Any) -> None:
        self.sync_session._sessionscope_scope = scope  # type: ignore[attr-defined]


class Turns:
    """One outermost scope at a time, for a pool whose every session gets the same
    connection (in-memory SQLite): their transactions would interleave on it.

    ``await take()`` returns False when it waited ``timeout`` (the pool's) in vain:
    raise ``timed_out()`` then. A free turn is taken without a timer.
    """

    __slots__ = ("_lock", "give_back", "holder", "timeout", "why")

    def __init__(self, timeout: float, why: str | None = None) -> None:
        self._lock = asyncio.Lock()
        self.timeout = timeout
        self.why = why  # what the wait is for, if not an in-memory database's connection
        self.holder: object = None  # the task whose scope has the turn
        self.give_back: Callable[[], None] = self._lock.release

    async def take(self) -> bool:
        lock = self._lock
        if not lock.locked():
            return await lock.acquire()
        try:
            async with asyncio.timeout(self.timeout):
                return await lock.acquire()
        except TimeoutError:
            return False

    def timed_out(self) -> Exception:
        if self.why is not None:
            return PoolTimeoutError(f"waited {self.timeout} s for {self.why}")
        return PoolTimeoutError(
            f"waited {self.timeout} s for the only connection of an in-memory SQLite "
            "database: another scope of the manager holds it (maybe the scope this task "
            "was started in, which keeps it until it exits: pass its session to the task "
            "instead, or use a database file)"
        )


def has_pending_changes(session: AsyncSession) -> bool:
    """Whether a flush would write anything: SQLAlchemy's own test (``_is_clean()``)
    read directly, as it runs on every COMMIT; ``new``, ``dirty`` and ``deleted``
    would build three sets to say so. tests/test_private_api.py guards the names."""
    sync = session.sync_session
    return bool(sync._new or sync._deleted or sync.identity_map._modified)


async def take_connection(session: AsyncSession) -> Connection:
    """The session's connection, taken now (its transaction begun): the sync one.
    ``AsyncSession.connection()`` would also make an ``AsyncConnection`` for it and
    register it in a weak registry, on every scope, for nothing; a session class
    with a ``connection()`` of its own gets it called, as it expects."""
    cls = type(session)
    plain = _plain_connection.get(cls)
    if plain is None:
        plain = _plain_connection[cls] = _connection_is_sqlalchemys(cls)
    if plain:
        connection: Connection = await greenlet_spawn(session.sync_session.connection)
        return connection
    taken = (await session.connection()).sync_connection
    assert taken is not None  # an AsyncConnection a session hands out is started
    return taken


_plain_connection: dict[type[Any], bool] = {}


def _connection_is_sqlalchemys(cls: type[Any]) -> bool:
    """Whether ``cls.connection`` is AsyncSession's own (under the one-task guard)."""
    for klass in cls.__mro__:
        method = klass.__dict__.get("connection")
        if method is None or getattr(method, "__module__", None) == _one_task.__name__:
            continue
        return method is AsyncSession.__dict__["connection"]
    return False


def close_if_idle(session: AsyncSession) -> bool:
    """Close ``session`` now if it holds no connection (as after a COMMIT); False if not.

    Closing such a session awaits nothing, so no cancellation can cut it short
    and it needs neither a shield nor a task of its own.
    """
    if session.sync_session._transaction is not None:  # in_transaction(), without the call
        return False
    try:
        session.sync_session.close()
    except (IllegalStateChangeError, MissingGreenlet):
        return False  # another task is inside it, or it had I/O to do after all
    return True


# The task that opens a scope: frames of other tasks are invisible to it.
current_owner: Callable[[], object] = asyncio.current_task


def sync_engine_of(engine: AsyncEngine) -> Engine:
    return engine.sync_engine


def is_flavour_function(fn: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(
        getattr(fn, "__call__", None)  # noqa: B004 - a callable object's coroutine method
    )


def other_flavour(bind: object) -> str | None:
    """The manager to use instead, if ``bind`` belongs to the sync flavour."""
    if isinstance(bind, Engine | sessionmaker | Session):
        return "SessionManager"
    return None


async def run_shielded(cleanup: Callable[..., Coroutine[Any, Any, _R]], *args: Any) -> _R:
    """Await cleanup to its end even if this task is cancelled meanwhile.

    The cleanup runs as its own task; a cancellation of the caller is held
    back until the cleanup has finished, then re-raised, so asyncio.timeout()
    and TaskGroup still see it and the connection still goes back to the pool.
    """
    task = asyncio.ensure_future(cleanup(*args))
    cancelled = False
    while True:
        try:
            result = await asyncio.shield(task)
            break
        except asyncio.CancelledError:
            if task.done():
                raise  # the cleanup itself was cancelled
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
    return result


async def call_maybe_async(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; await what it returns if that is awaitable (a coroutine function's result)."""
    result = fn(*args, **kwargs)
    if inspect.isawaitable(result):
        return await result
    return result


async def run_callbacks(callbacks: Iterable[Callable[[], Any]], log: Callable[..., None]) -> None:
    """Run on_commit/on_rollback callbacks; one failing does not stop the others."""
    for callback in callbacks:
        try:
            result = callback()
            if inspect.isawaitable(result):
                await result
        except Exception:
            log(logging.ERROR, "callback %r failed", callback, exc_info=True)


def deadline_guard(seconds: float) -> asyncio.Timeout | None:
    """The client-side bound of a scope with a deadline: cancels it when the time is up
    (and turns that cancellation into a TimeoutError as it is left)."""
    return asyncio.timeout(seconds)


async def run_on_connection(connection: AsyncConnection, fn: Callable[[Connection], _R]) -> _R:
    """Run ``fn`` with the sync Connection under ``connection`` (where it may block)."""
    return await connection.run_sync(fn)


# The event loop running this code: what an AsyncConnection belongs to.
running_loop: Callable[[], object] = asyncio.get_running_loop
