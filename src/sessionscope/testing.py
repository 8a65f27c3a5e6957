"""Test your code against the real database, committing as in production, leaving
nothing behind.

``isolated(*managers)`` (sync managers, ``with``) and ``async_isolated(*managers)``
(async managers, ``async with``): while active, every scope of the managers runs
on one connection per manager, inside a transaction rolled back at the exit.
An outermost scope is a SAVEPOINT: its commit releases it, its rollback (or an
exception) rolls back to it, and the body's own ``session.commit()`` works.
The README's "Testing your code" says what differs from production.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._sync.isolation import Isolation, isolated

if TYPE_CHECKING:
    from ._async.isolation import AsyncIsolation, async_isolated

__all__ = ["AsyncIsolation", "Isolation", "async_isolated", "isolated"]


def __getattr__(name: str) -> Any:
    # The async names need greenlet: loaded on first use, and without greenlet a
    # stand-in that fails on use, as in sessionscope itself.
    if name not in ("AsyncIsolation", "async_isolated"):
        raise AttributeError(f"module 'sessionscope.testing' has no attribute {name!r}")
    try:
        from ._async import isolation
    except ImportError as exc:
        from . import _unavailable

        value: Any = _unavailable(name, exc)
    else:
        value = getattr(isolation, name)
    globals()[name] = value
    return value
