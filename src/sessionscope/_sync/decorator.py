# Generated from src/sessionscope/_async/decorator.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""``with_session``: run a function in a scope, with the session as its first argument."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from .._defaults import get_default_manager
from .._frames import scope_of
from .._options import (
    SCOPE_OPTION_NAMES,
    SESSION_OPTION_NAMES,
    RetryOptions,
    ScopeOptions,
    resolve_retry_options,
    resolve_scope_options,
)
from .._sync_compat import (
    IS_ASYNC,
    Outcome,
    Session,
    call_maybe_async,
    is_flavour_function,
)
from .._transient import retry_reason
from ..config import SessionConfig
from .retrying import wait_before_retry
from .scope import SessionScope

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["SyncSessionDecorator", "session_function"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


class SyncSessionDecorator(Protocol):
    """What ``with_session(**options)`` returns: a decorator for a function whose first
    parameter takes the session, or a method whose second one does."""

    @overload
    def __call__(
        self, fn: Callable[Concatenate[Session, P], Outcome[R]], /
    ) -> Callable[P, Outcome[R]]: ...

    @overload
    def __call__(
        self, fn: Callable[Concatenate[T, Session, P], Outcome[R]], /
    ) -> Callable[Concatenate[T, P], Outcome[R]]: ...


_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NOTE = "sessionscope: "


def session_function(
    fn: Callable[..., Any],
    options: Mapping[str, Any],
    manager: SessionManager | None,
) -> Callable[..., Any]:
    """Wrap ``fn``; ``manager=None`` means the default manager, looked up at each call.

    Above ``@staticmethod`` or ``@classmethod`` the function inside is wrapped
    (and wrapped again the same way); a method's first parameter (``self`` or
    ``cls``) is left to Python, and the session is the one after it.
    """
    if isinstance(fn, staticmethod | classmethod):
        return type(fn)(session_function(fn.__func__, options, manager))
    if not callable(fn):
        raise TypeError("with_session decorates a function, got %r" % (fn,))
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            "%s is a generator function: its scope would have to stay open between the "
            "values it yields, whoever consumes them. Decorate a function that returns "
            "its results (a list, say), or open a scope inside the generator" % _name(fn)
        )
    if not is_flavour_function(fn):
        raise TypeError(
            "%s does not suit this decorator's flavour: decorate coroutine functions "
            "with the async decorator and plain functions with the sync one" % _name(fn)
        )
    signature, position = _session_parameter(fn)
    parameter = list(signature.parameters)[position]
    # Validate now, at decoration time, against the manager's config (or the
    # defaults when the manager is only known at call time).
    explicit = dict(options)
    config = manager.config if manager is not None else SessionConfig()
    resolve_scope_options(config, explicit, "with_session()", SESSION_OPTION_NAMES)
    _check_fallback(resolve_retry_options(config, explicit).fallback)
    scope_names = {k: v for k, v in explicit.items() if k in SCOPE_OPTION_NAMES}

    def settings_for(current: SessionManager) -> tuple[ScopeOptions, RetryOptions]:
        return (
            current._resolve_options(scope_names, "with_session()", connect_retries=0),
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
        bound = args[:position]  # a method's self or cls
        if position:
            args = args[position:]
        if parameter in kwargs:
            passed = kwargs.pop(parameter)
        elif args and isinstance(args[0], Session):
            passed, args = args[0], args[1:]
        else:
            passed = None
        parent = None
        if passed is not None:
            parent = scope_of(passed)
            if parent is None or parent.manager is not current:
                # Not a session of this manager's active scopes (an old
                # get_db() session, say): used as is.
                return fn(*bound, passed, *args, **kwargs)
        attempt = 0
        while True:
            scope = SessionScope(current, scope_options, parent)
            try:
                with scope as session:
                    return fn(*bound, session, *args, **kwargs)
                return None  # a sessionscope.Rollback was raised, and swallowed by the scope
            except Exception as error:
                if not scope.opens_transaction:
                    raise  # only the caller owning the transaction may re-run it
                reason = retry_reason(error, retry.retry_on, retry.idempotent, scope.connecting)
                if reason is None:
                    raise
                if not scope.may_rerun:
                    _note_once(
                        error,
                        "%s was not retried (%s): it committed part of its work itself "
                        "(session.commit()), which a re-run would apply again"
                        % (_name(fn), reason),
                    )
                    raise
                if attempt >= retry.attempts:
                    if retry.fallback is not None:
                        return call_maybe_async(retry.fallback, error, *bound, *args, **kwargs)
                    _note_once(
                        error,
                        "%s gave up after %d attempts (%s)" % (_name(fn), attempt + 1, reason),
                    )
                    raise
                attempt += 1
                wait_before_retry(current, attempt, reason, error, retry)

    parameters = list(signature.parameters.values())
    del parameters[position]
    call_in_scope.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters
    )
    return call_in_scope


def _note_once(error: BaseException, note: str) -> None:
    """Add our note to ``error``, unless an enclosing retry loop already has (the same
    error object can leave several decorated calls)."""
    if not any(n.startswith(_NOTE) for n in getattr(error, "__notes__", ())):
        error.add_note(_NOTE + note)


def _check_fallback(fallback: Callable[..., Any] | None) -> None:
    if fallback is not None and not IS_ASYNC and not is_flavour_function(fallback):
        raise TypeError(
            "fallback %s is a coroutine function; a sync function cannot await it" % _name(fallback)
        )


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def _session_parameter(fn: Callable[..., Any]) -> tuple[inspect.Signature, int]:
    """The signature, and the position of the parameter that takes the session: the
    first one, or the second one of a method (after ``self`` or ``cls``)."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())
    position = 1 if parameters and parameters[0].name in ("self", "cls") else 0
    if len(parameters) <= position or parameters[position].kind not in _POSITIONAL:
        shown = parameters[position] if len(parameters) > position else "no such parameter"
        raise TypeError(
            "%s cannot take the session as its %s parameter (it has %s); make the session "
            "the first positional parameter (after self or cls in a method)"
            % (_name(fn), "second" if position else "first", shown)
        )
    annotation = parameters[position].annotation
    if (
        annotation is not inspect.Parameter.empty
        and annotation is not Any  # a class since Python 3.11, and it takes anything
        and isinstance(annotation, type)
        and not (issubclass(annotation, Session) or issubclass(Session, annotation))
    ):
        raise TypeError(
            "%s: its parameter %r is annotated %s, which cannot take a %s"
            % (
                _name(fn),
                parameters[position].name,
                annotation.__name__,
                Session.__name__,
            )
        )
    return signature, position
