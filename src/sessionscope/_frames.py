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

import threading
from asyncio import _get_running_loop, current_task
from collections.abc import Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from ._call_site import opened_at

if TYPE_CHECKING:
    from ._settings import Setup

__all__ = [
    "ENDED",
    "FORKED",
    "Frame",
    "Level",
    "find_frame",
    "innermost",
    "mark_frames_forked",
    "owner_here",
    "scope_of",
    "usable_frame",
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

    # Most transactions register no callbacks and are never marked: class attributes
    # until they do (no __slots__, so that a new level stores only what it is told).
    on_commit: list[Callback] | None = None
    on_rollback: list[Callback] | None = None
    rollback_only = False
    rollback_cause: BaseException | None = None

    def __init__(
        self,
        parent: Level | None,
        *,
        is_async: bool,
        read_only: bool = False,
        isolation_level: str | None = None,
        transaction_id: int = 0,
        setup: Setup | None = None,
        deadline_at: float | None = None,
        fast: bool = False,
    ) -> None:
        self.parent = parent
        self.transaction_id = transaction_id  # the manager's number for the transaction
        self.is_async = is_async
        self.read_only = read_only
        self.isolation_level = isolation_level
        # What each transaction starts with, and when the call's deadline runs out
        # (a time.monotonic() time): see _settings.py.
        self.setup = setup
        self.deadline_at = deadline_at
        # A read-only transaction without BEGIN and COMMIT (on a connection in
        # autocommit mode): the read-only fast path of _replicas.py.
        self.fast = fast

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
        """Where this active scope was entered (``function at file:line``), looked up
        on the stack only when an error needs it: recording it would cost every scope."""
        return opened_at(self.session)


innermost: ContextVar[Frame | None] = ContextVar("sessionscope_innermost", default=None)


def owner_here() -> object:
    """Who may own a frame here: the running asyncio task, else the thread. (An
    async scope's owner is always its task; a sync scope's is its thread, or the
    task it was opened in, as tasks interleave in one thread at every await.)"""
    return (_get_running_loop() is not None and current_task()) or threading.get_ident()


_taking = threading.Lock()


def _may_use(frame: Frame, owner: object) -> bool:
    """Whether ``owner`` may use ``frame``; a handed-over frame becomes the taker's."""
    if frame.owner is None:
        with _taking:
            if frame.owner is None:
                frame.owner = owner
    return frame.owner == owner


def find_frame(manager: object, owner: object) -> Frame | None:
    """The innermost active frame (of ``manager``, or of any manager if None) that
    ``owner`` may join."""
    frame = innermost.get()
    while frame is not None:
        if frame.owner in _GONE:
            pass  # ended (or the parent process's): what is below it may still be ours
        elif frame.owner == owner or _may_use(frame, owner):
            if manager is None or frame.manager is manager:
                return frame
        else:
            return None  # inherited from another task or thread: so is everything below it
        frame = frame.parent
    return None


def usable_frame() -> Frame | None:
    """The innermost frame of either flavour that the code running here may use."""
    return find_frame(None, owner_here())


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
