"""One task at a time inside an ``AsyncSession`` operation.

Two tasks using one ``AsyncSession`` at once corrupt its state, and SQLAlchemy
says so late and obscurely, if at all. The session classes of async managers
raise ``ConcurrentSessionUseError`` at once, naming both tasks. A feature of
the async flavour, hand-written: the sync flavour's equivalent is ownership
(a scope belongs to one thread or task, see ``_frames.py``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from .errors import ConcurrentSessionUseError

__all__ = ["guarded_session_class"]


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
    """The state of the one-task-at-a-time guard, mixed into the session classes
    managers use: a second task entering an operation while another task is
    inside one gets ConcurrentSessionUseError."""

    _sessionscope_user: asyncio.Task[Any] | None = None
    _sessionscope_depth = 0


def _guard(name: str, unguarded: Callable[..., Any]) -> Callable[..., Coroutine[Any, Any, Any]]:
    current_task = asyncio.current_task

    async def operation(self: Any, *args: Any, **kwargs: Any) -> Any:
        task = current_task()
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
            return await unguarded(self, *args, **kwargs)
        finally:
            self._sessionscope_depth -= 1
            if not self._sessionscope_depth:
                self._sessionscope_user = None

    operation.__name__ = operation.__qualname__ = name
    operation.__doc__ = unguarded.__doc__
    return operation


def _task_name(task: asyncio.Task[Any] | None) -> str:
    return task.get_name() if task is not None else "code outside any task"


_guarded_classes: dict[type[Any], type[Any]] = {}


def guarded_session_class(cls: type[AsyncSession]) -> type[AsyncSession]:
    """``cls`` with the one-task-at-a-time guard (made once per class).

    Each guarded method calls ``cls``'s own method directly, looked up once here
    rather than through ``super()`` on every call: it is on every statement's path.
    """
    guarded = _guarded_classes.get(cls)
    if guarded is None:
        namespace: dict[str, Any] = {"__module__": cls.__module__}
        for name in _OPERATIONS:
            unguarded = getattr(cls, name, None)
            if unguarded is not None:  # get_one() is newer than SQLAlchemy 2.0.0
                namespace[name] = _guard(name, unguarded)
        guarded = type(cls.__name__, (_OneTaskAtATime, cls), namespace)
        _guarded_classes[cls] = guarded
    return guarded
