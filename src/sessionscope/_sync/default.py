# Generated from src/sessionscope/_async/default.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""The module-level scope and decorator of this flavour, on its default manager."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar, Unpack, overload

from .._defaults import get_default_manager
from .._options import ScopeKwargs, SessionKwargs
from .._sync_compat import IS_ASYNC, Outcome, Session
from .decorator import SyncSessionDecorator, session_function
from .scope import SessionScope

__all__ = ["session_scope", "with_session"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def session_scope(**options: Unpack[ScopeKwargs]) -> SessionScope:
    """``manager.session_scope(**options)`` on the default manager of this flavour."""
    manager = get_default_manager(IS_ASYNC)
    return manager.session_scope(**options)  # type: ignore[no-any-return]


@overload
def with_session(
    fn: Callable[Concatenate[Session, P], Outcome[R]], /
) -> Callable[P, Outcome[R]]: ...


@overload
def with_session(
    fn: Callable[Concatenate[T, Session, P], Outcome[R]], /
) -> Callable[Concatenate[T, P], Outcome[R]]: ...


@overload
def with_session(fn: None = None, /, **options: Unpack[SessionKwargs]) -> SyncSessionDecorator: ...


def with_session(fn: Any = None, /, **options: Any) -> Any:
    """``manager.with_session`` on the default manager, looked up at each call.

    Decorating needs no manager yet (modules are often imported before the
    application sets one up); calling does.
    """
    if fn is None:
        return lambda fn: session_function(fn, options, None)
    return session_function(fn, options, None)
