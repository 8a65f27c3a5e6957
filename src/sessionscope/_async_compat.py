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
