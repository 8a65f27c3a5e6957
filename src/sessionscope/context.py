"""Which scopes are active in this task or thread, and the callbacks they hold.

A *frame* is one active scope. Frames form a linked list, innermost first,
held in a context variable, so every task and thread sees its own chain. A
*level* is one transaction or one savepoint: joined scopes share their
parent's level, a nested scope adds a savepoint level, and a new session adds
a transaction level. Callbacks and the rollback-only mark live on levels.

Python copies the context into every asyncio task, into threads started with
``contextvars.copy_context()``, and into thread-pool calls that propagate it,
so such code sees the frames of the scope it was started in, even after that
scope has ended. A frame is therefore joined only by its *owner*, and only
while it is active: the task that entered it (async scopes) or the thread
(sync scopes, which block their thread). Anyone else opens a scope of their
own, so two tasks or threads never share a session by accident. An explicit
hand-over (``make_current()``, which the FastAPI integration uses for ``def``
endpoints run in a worker thread) leaves a frame without an owner until the
first thread (or task) that looks for it takes it.
"""

from __future__ import annotations

import inspect
import sys
import threading
from asyncio import _get_running_loop, current_task
from collections.abc import Callable
from contextvars import ContextVar
from types import FrameType
from typing import Any

from .errors import ConfigurationError, NoActiveSessionError

__all__ = [
    "ENDED",
    "call_site",
    "FORKED",
    "Frame",
    "Level",
    "current_session",
    "find_frame",
    "get_default_manager",
    "mark_frames_forked",
    "scope_of",
    "on_commit",
    "on_rollback",
    "set_default_manager",
]

Callback = Callable[[], Any]


class _Gone:
    """The owner of a frame nobody may join any more."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


ENDED = _Gone("ENDED")  # the scope has exited
FORKED = _Gone("FORKED")  # the scope belongs to the parent of this forked process
_GONE = (ENDED, FORKED)


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
        *,
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

    def take_callbacks(self, committed: bool) -> list[Callback] | None:
        """The transaction ended: the callbacks of the outcome, the others dropped."""
        callbacks = self.on_commit if committed else self.on_rollback
        self.on_commit = self.on_rollback = None
        self.rollback_only = False
        self.rollback_cause = None
        return callbacks

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
    # The task or thread that may join it (see the module's docstring); None
    # while handed over and not yet taken; ENDED or FORKED once nobody may.
    owner: object

    def opened_at(self) -> str:
        """Where this active scope was entered (``function at file:line``), looked up on
        the stack of the code running inside it: nothing is recorded on entry, which
        every scope would pay for. The line is the one that function is running now."""
        session = self.session
        found = None
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            # The outermost frame holding the session: scopes inside it hold it too.
            if any(value is session for value in frame.f_locals.values()):
                found = frame
            frame = frame.f_back
        if found is None:
            return "a place no longer on the stack"
        return _describe(_outside_sessionscope(found))


def call_site() -> str:
    """Where the user's code is: the first frame outside sessionscope. While a
    with-block exits, Python reports the line of its ``with`` statement, so
    called from a scope's exit this is where the scope was opened."""
    return _describe(_outside_sessionscope(sys._getframe(1)))


def _outside_sessionscope(frame: FrameType) -> FrameType:
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "sessionscope."
    ):
        frame = frame.f_back
    return frame


def _describe(frame: FrameType) -> str:
    return f"{frame.f_code.co_name} at {frame.f_code.co_filename}:{frame.f_lineno}"


innermost: ContextVar[Frame | None] = ContextVar("sessionscope_innermost", default=None)


def _running_task() -> object:
    return current_task() if _get_running_loop() is not None else None


_taking = threading.Lock()


def _may_use(frame: Frame, owner: object) -> bool:
    """Whether ``owner`` may use ``frame``; a handed-over frame becomes the taker's."""
    if frame.owner is None:
        with _taking:
            if frame.owner is None:
                frame.owner = owner
    return frame.owner == owner


def find_frame(manager: object, owner: object, also: object = None) -> Frame | None:
    """The innermost active frame (of ``manager``, or of any manager if None) that
    ``owner`` (or ``also``, if given) may join."""
    frame = innermost.get()
    while frame is not None:
        if frame.owner in _GONE:
            pass  # ended (or the parent process's): what is below it may still be ours
        elif frame.owner == owner or (also is not None and frame.owner == also):
            if manager is None or frame.manager is manager:
                return frame
        elif not _may_use(frame, owner):
            return None  # inherited from another task or thread: so is everything below it
        elif manager is None or frame.manager is manager:
            return frame
        frame = frame.parent
    return None


def _usable_frame() -> Frame | None:
    """The innermost frame of either flavour this code may use: an async scope of its
    task, or a sync scope of its thread."""
    return find_frame(None, threading.get_ident(), _running_task())


def scope_of(session: object) -> Frame | None:
    """The innermost scope using ``session`` (of either flavour), if any."""
    sync = getattr(session, "sync_session", session)
    scope: Frame | None = getattr(sync, "_sessionscope_scope", None)
    return scope


def mark_frames_forked() -> list[Any]:
    """In a child process just forked: the scopes of this context are the parent's.
    Returns the sessions of those still active."""
    sessions = []
    frame = innermost.get()
    while frame is not None:
        if frame.owner is not ENDED:
            frame.owner = FORKED
            sessions.append(frame.session)
        frame = frame.parent
    return sessions


def current_session() -> Any:
    """The session of the innermost active scope in this task or thread.

    Raises :class:`NoActiveSessionError` when no scope is active.
    """
    frame = _usable_frame()
    if frame is None:
        raise NoActiveSessionError("current_session() was called outside of any session scope")
    return frame.session


def _register(kind: str, callback: Callback) -> Level:
    if not callable(callback):
        raise TypeError(f"{kind}() takes a callable, got {callback!r}")
    frame = _usable_frame()
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
