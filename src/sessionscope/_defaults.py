"""The default manager of each flavour, which the module-level functions use."""

from __future__ import annotations

from typing import Any

from .errors import ConfigurationError

__all__ = ["get_default_manager", "reset_default_managers", "set_default_manager"]

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
