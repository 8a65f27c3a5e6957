"""What code running inside a scope asks of it: its session, and callbacks for
the outcome of its transaction. Both flavours, found by ``usable_frame()``."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from ._frames import Level, usable_frame
from .errors import NoActiveSessionError

__all__ = ["current_session", "on_commit", "on_rollback"]

Callback = Callable[[], Any]


def current_session() -> Any:
    """The session of the innermost active scope in this task or thread.

    Raises :class:`NoActiveSessionError` when no scope is active.
    """
    frame = usable_frame()
    if frame is None:
        raise NoActiveSessionError("current_session() was called outside of any session scope")
    return frame.session


def _register(kind: str, callback: Callback) -> Level:
    if not callable(callback):
        raise TypeError(f"{kind}() takes a callable, got {callback!r}")
    frame = usable_frame()
    if frame is None:
        raise NoActiveSessionError(f"{kind}() needs an active session scope in this task or thread")
    level = frame.level
    if not level.is_async and (
        inspect.iscoroutinefunction(callback)
        or inspect.iscoroutinefunction(
            getattr(callback, "__call__", None)  # noqa: B004 - a callable object's coroutine method
        )
    ):
        raise TypeError(
            f"{kind}() got the coroutine function {callback!r} in a sync scope, "
            "where nothing could await it; pass a plain function"
        )
    return level


def on_commit(callback: Callback) -> None:
    """Run ``callback()`` once, after the outermost transaction commits.

    It is dropped if the transaction, or the savepoint it was registered in,
    rolls back. In an async scope it may be a coroutine function; it is awaited.
    A failing callback is logged; it does not undo the commit.
    """
    level = _register("on_commit", callback)
    if level.on_commit is None:
        level.on_commit = [callback]
    else:
        level.on_commit.append(callback)


def on_rollback(callback: Callback) -> None:
    """Run ``callback()`` once, when the savepoint or transaction it belongs to rolls back."""
    level = _register("on_rollback", callback)
    if level.on_rollback is None:
        level.on_rollback = [callback]
    else:
        level.on_rollback.append(callback)
