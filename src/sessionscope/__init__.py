"""Transactional SQLAlchemy 2.x sessions for sync and async Python.

Sync names import with plain SQLAlchemy; async names (``AsyncSessionManager``,
``async_session_scope``, ``async_with_session``) are loaded on first use and
need ``pip install "sessionscope[asyncio]"`` (greenlet).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._current import current_session, on_commit, on_rollback
from ._defaults import set_default_manager
from ._sync import SessionManager, SessionScope, session_scope, with_session
from ._transient import is_transient
from .config import SessionConfig
from .errors import (
    CommitOutcomeUnknownError,
    ConcurrentSessionUseError,
    ConfigurationError,
    DeadlineExceededError,
    NoActiveSessionError,
    Rollback,
    SessionScopeError,
    TransactionOwnershipError,
    TransactionRolledBackError,
)
from .monitor import SessionMonitor

if TYPE_CHECKING:
    from ._async import (
        AsyncSessionManager,
        AsyncSessionScope,
        async_session_scope,
        async_with_session,
    )

__version__ = "0.1.0"

__all__ = [
    "AsyncSessionManager",
    "AsyncSessionScope",
    "CommitOutcomeUnknownError",
    "ConcurrentSessionUseError",
    "ConfigurationError",
    "DeadlineExceededError",
    "NoActiveSessionError",
    "Rollback",
    "SessionConfig",
    "SessionManager",
    "SessionMonitor",
    "SessionScope",
    "SessionScopeError",
    "TransactionOwnershipError",
    "TransactionRolledBackError",
    "async_session_scope",
    "async_with_session",
    "current_session",
    "is_transient",
    "on_commit",
    "on_rollback",
    "session_scope",
    "set_default_manager",
    "with_session",
]

_ASYNC_NAMES = frozenset(
    {"AsyncSessionManager", "AsyncSessionScope", "async_session_scope", "async_with_session"}
)


def __getattr__(name: str) -> Any:
    if name not in _ASYNC_NAMES:
        raise AttributeError(f"module 'sessionscope' has no attribute {name!r}")
    return _load_async(name, "", globals())


def _load_async(name: str, module: str, namespace: dict[str, Any]) -> Any:
    """``name`` from ``sessionscope._async`` (or its ``module``), imported on first use
    and kept in ``namespace``. Without greenlet, a stand-in that fails on use, not
    on import: ``from sessionscope import *`` and sync-only code keep working
    (httpcore does the same)."""
    try:
        value: Any = importlib.import_module(f"{__name__}._async{module and '.' + module}")
    except ImportError as exc:
        value = _unavailable(name, exc)
    else:
        value = getattr(value, name)
    namespace[name] = value
    return value


def _unavailable(name: str, cause: ImportError) -> type:
    message = (
        f"sessionscope.{name} needs SQLAlchemy's asyncio support (greenlet): "
        f'pip install "sessionscope[asyncio]" ({cause})'
    )

    def __new__(cls: type, *args: object, **kwargs: object) -> Any:
        raise ImportError(message) from cause

    return type(name, (), {"__new__": __new__, "__doc__": message, "__module__": __name__})


def __dir__() -> list[str]:
    return sorted(set(globals()) | _ASYNC_NAMES)
