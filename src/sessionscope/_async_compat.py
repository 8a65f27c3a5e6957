"""What differs between the flavours, async side: the hand-written half of a pair.

``_async/`` code imports every async-only name from here; the generator maps
``_async_compat`` to ``_sync_compat``, whose names are the sync twins. This is
the only module of the async flavour that imports ``sqlalchemy.ext.asyncio``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable, Coroutine, Iterable
from typing import Any, TypeVar

from sqlalchemy import Engine
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    AsyncSessionTransaction,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import Session, sessionmaker

from .errors import ConcurrentSessionUseError

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
    "async_sessionmaker",
    "call_maybe_async",
    "guarded_session_class",
    "create_async_engine",
    "current_owner",
    "is_flavour_function",
    "other_flavour",
    "run_callbacks",
    "run_shielded",
    "sleep",
    "sync_engine_of",
]

IS_ASYNC = True

_R = TypeVar("_R")
Outcome = Coroutine[Any, Any, _R]
"""What calling a decorated function returns: a coroutine in this flavour."""

sleep = asyncio.sleep


# The AsyncSession methods that run an operation: one task at a time may be in them.
_OPERATIONS = (
    "connection",
    "delete",
    "execute",
    "flush",
    "get",
    "get_one",
    "merge",
    "refresh",
    "rollback",
    "commit",
    "run_sync",
    "scalar",
    "scalars",
    "stream",
    "stream_scalars",
)


class _OneTaskAtATime:
    """Mixed into the session classes managers use: a second task entering an
    operation while another task is inside one gets ConcurrentSessionUseError."""

    _sessionscope_user: asyncio.Task[Any] | None = None
    _sessionscope_depth = 0


def _guard(name: str) -> Callable[..., Coroutine[Any, Any, Any]]:
    async def operation(self: Any, *args: Any, **kwargs: Any) -> Any:
        task = asyncio.current_task()
        user = self._sessionscope_user
        if user is not None and user is not task:
            raise ConcurrentSessionUseError(
                f"AsyncSession.{name}() was called by {_task_name(task)!r} while "
                f"{_task_name(user)!r} is inside an operation on the same session; a session "
                "runs one operation at a time: give each task its own scope"
            )
        self._sessionscope_user = task
        self._sessionscope_depth += 1
        try:
            return await getattr(super(_OneTaskAtATime, self), name)(*args, **kwargs)
        finally:
            self._sessionscope_depth -= 1
            if not self._sessionscope_depth:
                self._sessionscope_user = None

    operation.__name__ = operation.__qualname__ = name
    return operation


for _name in _OPERATIONS:
    setattr(_OneTaskAtATime, _name, _guard(_name))


def _task_name(task: asyncio.Task[Any] | None) -> str:
    return task.get_name() if task is not None else "code outside any task"


_guarded_classes: dict[type[Any], type[Any]] = {}


def guarded_session_class(cls: type[AsyncSession]) -> type[AsyncSession]:
    """``cls`` with the one-task-at-a-time guard (made once per class)."""
    guarded = _guarded_classes.get(cls)
    if guarded is None:
        guarded = type(cls.__name__, (_OneTaskAtATime, cls), {"__module__": cls.__module__})
        _guarded_classes[cls] = guarded
    return guarded


def current_owner() -> object:
    """The task that opens a scope: frames of other tasks are invisible to it."""
    return asyncio.current_task()


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
