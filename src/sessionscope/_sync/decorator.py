# Generated from src/sessionscope/_async/decorator.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""``with_session``: run a function in a scope, with the session as its first argument."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from .._sync_compat import (
    IS_ASYNC,
    Session,
    call_maybe_async,
    current_owner,
    is_flavour_function,
)
from ..config import SessionConfig
from ..context import frame_of_session, get_default_manager
from ..options import (
    SCOPE_OPTION_NAMES,
    SESSION_OPTION_NAMES,
    RetryOptions,
    ScopeOptions,
    resolve_retry_options,
    resolve_scope_options,
)
from ..transient import retry_reason
from .retrying import wait_before_retry
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
    _check_fallback(resolve_retry_options(config, explicit).fallback)
    scope_names = {k: v for k, v in explicit.items() if k in SCOPE_OPTION_NAMES}

    def settings_for(current: SessionManager) -> tuple[ScopeOptions, RetryOptions]:
        return (
            current.resolve_options(scope_names, "with_session()", connect_retries=0),
            resolve_retry_options(current.config, explicit),
        )

    # The settings for the manager of the last call, as one tuple so that
    # threads replacing it never see a half-updated pair.
    cached: tuple[object, tuple[ScopeOptions, RetryOptions] | None] = (None, None)
    if manager is not None:
        cached = (manager, settings_for(manager))

    @functools.wraps(fn)
    def call_in_scope(*args: Any, **kwargs: Any) -> Any:
        nonlocal cached
        current = manager if manager is not None else get_default_manager(IS_ASYNC)
        owner, settings = cached
        if owner is not current or settings is None:
            settings = settings_for(current)
            cached = (current, settings)
        scope_options, retry = settings
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
        attempt = 0
        while True:
            scope = SessionScope(current, scope_options, parent)
            try:
                with scope as session:
                    return fn(session, *args, **kwargs)
            except Exception as error:
                if not scope.opens_transaction:
                    raise  # only the caller owning the transaction may re-run it
                reason = retry_reason(error, retry.retry_on, retry.idempotent, scope.connecting)
                if reason is None:
                    raise
                if attempt >= retry.attempts:
                    if retry.fallback is not None:
                        return call_maybe_async(retry.fallback, error, *args, **kwargs)
                    error.add_note(
                        "sessionscope: %s gave up after %d attempts (%s)"
                        % (_name(fn), attempt + 1, reason)
                    )
                    raise
                attempt += 1
                wait_before_retry(current, attempt, reason, error, retry)

    call_in_scope.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=list(signature.parameters.values())[1:]
    )
    return call_in_scope


def _check_fallback(fallback: Callable[..., Any] | None) -> None:
    if fallback is not None and not IS_ASYNC and not is_flavour_function(fallback):
        raise TypeError(
            "fallback %s is a coroutine function; a sync function cannot await it" % _name(fallback)
        )


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
        and annotation is not Any  # a class since Python 3.11, and it takes anything
        and isinstance(annotation, type)
        and not (issubclass(annotation, Session) or issubclass(Session, annotation))
    ):
        raise TypeError(
            "%s: its first parameter %r is annotated %s, which cannot take a %s"
            % (_name(fn), parameters[0].name, annotation.__name__, Session.__name__)
        )
    return signature, parameters[0].name
