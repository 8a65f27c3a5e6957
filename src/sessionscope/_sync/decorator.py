# Generated from src/sessionscope/_async/decorator.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""``with_session``: run a function in a scope, with the session as its first argument."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._sync_compat import IS_ASYNC, Session, current_owner, is_flavour_function
from ..config import SessionConfig
from ..context import frame_of_session, get_default_manager
from ..options import (
    SCOPE_OPTION_NAMES,
    SESSION_OPTION_NAMES,
    ScopeOptions,
    resolve_retry_options,
    resolve_scope_options,
)
from .scope import SessionScope

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["session_function"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


def session_function(
    fn: Callable[..., Any],
    options: Mapping[str, Any],
    manager: SessionManager | None,
) -> Callable[..., Any]:
    """Wrap ``fn``; ``manager=None`` means the default manager, looked up at each call."""
    if not callable(fn):
        raise TypeError("with_session decorates a function, got %r" % (fn,))
    if not is_flavour_function(fn):
        raise TypeError(
            "%s does not suit this decorator's flavour: decorate coroutine functions "
            "with the async decorator and plain functions with the sync one" % _name(fn)
        )
    signature, parameter = _session_parameter(fn)
    # Validate now, at decoration time, against the manager's config (or the
    # defaults when the manager is only known at call time).
    explicit = dict(options)
    config = manager.config if manager is not None else SessionConfig()
    resolve_scope_options(config, explicit, "with_session()", SESSION_OPTION_NAMES)
    resolve_retry_options(config, explicit)
    scope_names = {k: v for k, v in explicit.items() if k in SCOPE_OPTION_NAMES}
    # The scope options for the manager of the last call, as one tuple so that
    # threads replacing it never see a half-updated pair.
    cached: tuple[object, ScopeOptions | None] = (None, None)
    if manager is not None:
        cached = (manager, manager.resolve_options(scope_names, "with_session()"))

    def scope_options(current: SessionManager) -> ScopeOptions:
        nonlocal cached
        owner, options = cached
        if owner is not current or options is None:
            options = current.resolve_options(scope_names, "with_session()")
            cached = (current, options)
        return options

    @functools.wraps(fn)
    def call_in_scope(*args: Any, **kwargs: Any) -> Any:
        current = manager if manager is not None else get_default_manager(IS_ASYNC)
        options = scope_options(current)
        if parameter in kwargs:
            passed = kwargs.pop(parameter)
        elif args and isinstance(args[0], Session):
            passed, args = args[0], args[1:]
        else:
            passed = None
        parent = None
        if passed is not None:
            parent = frame_of_session(current, passed, current_owner())
            if parent is None:
                # Not one of ours (an old get_db() session, say): used as is.
                return fn(passed, *args, **kwargs)
        with SessionScope(current, options, parent) as session:
            return fn(session, *args, **kwargs)

    call_in_scope.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return call_in_scope


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _session_parameter(fn: Callable[..., Any]) -> tuple[inspect.Signature, str]:
    """The signature and the name of the first parameter, which must take the session."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())
    if (
        not parameters
        or parameters[0].kind not in _POSITIONAL
        or parameters[0].name
        in (
            "self",
            "cls",
        )
    ):
        first = parameters[0] if parameters else "no parameters at all"
        raise TypeError(
            "%s cannot take the session as its first parameter (it has %s); "
            "make the session the first positional parameter" % (_name(fn), first)
        )
    annotation = parameters[0].annotation
    if (
        annotation is not inspect.Parameter.empty
        and isinstance(annotation, type)
        and not (issubclass(annotation, Session) or issubclass(Session, annotation))
    ):
        raise TypeError(
            "%s: its first parameter %r is annotated %s, which cannot take a %s"
            % (_name(fn), parameters[0].name, annotation.__name__, Session.__name__)
        )
    return signature, parameters[0].name
