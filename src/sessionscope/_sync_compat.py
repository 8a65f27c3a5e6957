"""What differs between the flavours, sync side: the hand-written half of a pair.

Generated ``_sync/`` code imports these where ``_async/`` code imports
``_async_compat``. Nothing here may import ``sqlalchemy.ext.asyncio``: the sync
flavour must work with SQLAlchemy installed without greenlet.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.exc import IllegalStateChangeError
from sqlalchemy.orm import Session, SessionTransaction, sessionmaker

from .context import current_owner
from .errors import ConfigurationError

__all__ = [
    "IS_ASYNC",
    "Connection",
    "Engine",
    "Outcome",
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
    "listen_after_begin",
    "other_flavour",
    "run_callbacks",
    "run_shielded",
    "sessionmaker",
    "sleep",
    "sync_engine_of",
    "sync_session_of",
]

IS_ASYNC = False

_R = TypeVar("_R")
Outcome = Annotated[_R, "returned as is"]
"""What calling a decorated function returns: its own result in this flavour."""

sleep = time.sleep


def guarded_session_class(cls: type[Session]) -> type[Session]:
    """Sync sessions are used by one thread at a time by construction: no guard."""
    return cls


def listen_after_begin(maker: sessionmaker[Any], listener: Callable[..., Any]) -> None:
    """Call ``listener`` from the ``after_begin`` event of the sessions ``maker`` makes:
    a sessionmaker gives its sessions a class of their own, so no others."""
    event.listen(maker, "after_begin", listener)


def sync_session_of(session: Session) -> Any:
    return session


class Turns:
    """One outermost scope at a time, for a pool whose every session gets the same
    connection (in-memory SQLite): their transactions would interleave on it."""

    __slots__ = ("_lock", "_thread")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._thread: int | None = None

    def take(self) -> None:
        if not self._lock.acquire(False):
            if self._thread == threading.get_ident():
                # Sync scopes of asyncio tasks that interleave in one thread: waiting
                # here would block the very thread that has to give the turn back.
                raise ConfigurationError(
                    "two scopes of a manager whose pool has a single connection (in-memory "
                    "SQLite) are open at once in one thread, by tasks of an event loop; "
                    "use the AsyncSessionManager from async code, or a database file"
                )
            self._lock.acquire()
        self._thread = threading.get_ident()

    def give_back(self) -> None:
        self._thread = None
        self._lock.release()


def has_pending_changes(session: Session) -> bool:
    """Whether a flush would write anything: SQLAlchemy's own test (``_is_clean()``)
    read directly, as it runs on every COMMIT; ``new``, ``dirty`` and ``deleted``
    would build three sets to say so. tests/test_private_api.py guards the names."""
    sync = session
    return bool(sync._new or sync._deleted or sync.identity_map._modified)


def close_if_idle(session: Session) -> bool:
    """Close ``session`` now if it holds no connection (as after a COMMIT); False if not."""
    if session._transaction is not None:  # in_transaction(), without the call
        return False
    try:
        session.close()
    except IllegalStateChangeError:
        return False  # another thread is inside it: the careful way
    return True


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
