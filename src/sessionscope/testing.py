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
    # Loaded on first use, as sessionscope's own async names are (they need greenlet).
    if name not in ("AsyncIsolation", "async_isolated"):
        raise AttributeError(f"module 'sessionscope.testing' has no attribute {name!r}")
    from . import _load_async

    return _load_async(name, "isolation", globals())
