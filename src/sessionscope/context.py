"""Which scopes are active in this task or thread, and the callbacks they hold.

A *frame* is one active scope. Frames form a linked list, innermost first,
held in a context variable, so every task and thread sees its own chain. A
*level* is one transaction or one savepoint: joined scopes share their
parent's level, a nested scope adds a savepoint level, and a new session adds
a transaction level. Callbacks and the rollback-only mark live on levels.

asyncio copies the context into every task it creates, so a child task sees
its parent's frames; an async frame records the task that opened it and is
invisible to any other task (one AsyncSession must never be used by two tasks
at once). Sync frames belong to whoever holds the context: a thread-pool call
that copies the context (as FastAPI's does) sees the caller's session.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from .errors import ConfigurationError, NoActiveSessionError

__all__ = [
    "Frame",
    "Level",
    "current_session",
    "find_frame",
    "get_default_manager",
    "on_commit",
    "on_rollback",
    "set_default_manager",
]

Callback = Callable[[], Any]


class Level:
    """A transaction or a savepoint."""

    __slots__ = (
        "is_async",
        "isolation_level",
        "on_commit",
        "on_rollback",
        "parent",
        "read_only",
        "rollback_cause",
        "rollback_only",
        "transaction_id",
    )

    def __init__(
        self,
        parent: Level | None,
        is_async: bool,
        read_only: bool = False,
        isolation_level: str | None = None,
        transaction_id: int = 0,
    ) -> None:
        self.parent = parent
        self.transaction_id = transaction_id  # the manager's number for the transaction
        self.is_async = is_async
        self.read_only = read_only
        self.isolation_level = isolation_level
        # Most transactions register no callbacks: the lists are made on demand.
        self.on_commit: list[Callback] | None = None
        self.on_rollback: list[Callback] | None = None
        self.rollback_only = False
        self.rollback_cause: BaseException | None = None

    def mark_rollback_only(self, cause: BaseException) -> None:
        if not self.rollback_only:
            self.rollback_only = True
            self.rollback_cause = cause

    def hand_up(self) -> None:
        """A released savepoint's callbacks now belong to the enclosing level."""
        parent = self.parent
        assert parent is not None
        if self.on_commit:
            parent.on_commit = (parent.on_commit or []) + self.on_commit
        if self.on_rollback:
            parent.on_rollback = (parent.on_rollback or []) + self.on_rollback


class Frame:
    """One active scope: the base of both flavours' scope classes, so entering a
    scope allocates nothing more than the scope itself. Set when it is entered."""

    __slots__ = ("level", "manager", "owner", "parent", "session")

    manager: Any  # the manager whose scope this is
    session: Any  # None until entered
    level: Level  # the transaction or savepoint it runs in
    parent: Frame | None  # the enclosing frame, of any manager
    owner: object  # the task that entered it (async), or None


innermost: ContextVar[Frame | None] = ContextVar("sessionscope_innermost", default=None)


def _running_task() -> object:
    try:
        return asyncio.current_task()
    except RuntimeError:  # no running event loop in this thread
        return None


def _innermost_usable() -> Frame | None:
    """The innermost frame this task or thread may use, or None."""
    frame = innermost.get()
    if frame is not None and frame.owner is not None and frame.owner is not _running_task():
        return None
    return frame


def find_frame(manager: object, owner: object) -> Frame | None:
    """The innermost active frame of ``manager`` that the caller (task ``owner``) may use."""
    frame = innermost.get()
    while frame is not None:
        if frame.owner is not None and frame.owner is not owner:
            if owner is None:
                owner = _running_task()
            if frame.owner is not owner:
                # Inherited from another task: so is everything below it.
                return None
        if frame.manager is manager:
            return frame
        frame = frame.parent
    return None


def frame_of_session(manager: object, session: object, owner: object) -> Frame | None:
    """The active frame of ``manager`` whose session is ``session``, if any."""
    frame = find_frame(manager, owner)
    while frame is not None:
        if frame.manager is manager and frame.session is session:
            return frame
        frame = _next_usable(frame.parent, owner)
    return None


def _next_usable(frame: Frame | None, owner: object) -> Frame | None:
    if frame is not None and frame.owner is not None and frame.owner is not owner:
        if owner is None and frame.owner is _running_task():
            return frame
        return None
    return frame


def current_session() -> Any:
    """The session of the innermost active scope in this task or thread.

    Raises :class:`NoActiveSessionError` when no scope is active.
    """
    frame = _innermost_usable()
    if frame is None:
        raise NoActiveSessionError("current_session() was called outside of any session scope")
    return frame.session


def _register(kind: str, callback: Callback) -> Level:
    if not callable(callback):
        raise TypeError(f"{kind}() takes a callable, got {callback!r}")
    frame = _innermost_usable()
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


# The default managers, by flavour: [sync, async].
_defaults: list[Any] = [None, None]


def set_default_manager(manager: Any) -> None:
    """Make ``manager`` the default of its flavour for the module-level functions.

    An ``AsyncSessionManager`` serves ``async_session_scope``/``async_with_session``;
    a ``SessionManager`` serves ``session_scope``/``with_session``.
    """
    is_async = getattr(manager, "is_async", None)
    if not isinstance(is_async, bool):
        raise ConfigurationError(
            "set_default_manager() takes a SessionManager or an AsyncSessionManager, "
            f"got {manager!r}"
        )
    _defaults[is_async] = manager


def get_default_manager(is_async: bool) -> Any:
    manager = _defaults[is_async]
    if manager is None:
        kind, functions = (
            ("AsyncSessionManager", "async_session_scope()/async_with_session")
            if is_async
            else ("SessionManager", "session_scope()/with_session")
        )
        raise ConfigurationError(
            f"no default {kind}: call sessionscope.set_default_manager({kind}(url)) "
            f"before using {functions}"
        )
    return manager


def reset_default_managers() -> None:
    """Forget both default managers (for tests and application shutdown)."""
    _defaults[0] = _defaults[1] = None
