# Generated from src/sessionscope/_async/decorator.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""``with_session``: run a function in a scope, with the session as its first argument."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from time import monotonic
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, Protocol, TypeVar, overload

from .._decorating import check_decorated, check_fallback, name_of, note_once
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
from .._settings import deadline_exceeded
from .._sync_compat import (
    IS_ASYNC,
    Outcome,
    Session,
    call_maybe_async,
    is_flavour_function,
)
from .._transient import retry_reason
from ..config import SessionConfig
from ..errors import DeadlineExceededError
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
    signature, position = check_decorated(fn, Session, is_flavour_function)
    parameter = list(signature.parameters)[position]
    # Validate now, at decoration time, against the manager's config (or the
    # defaults when the manager is only known at call time).
    explicit = dict(options)
    config = manager.config if manager is not None else SessionConfig()
    resolve_scope_options(config, explicit, "with_session()", SESSION_OPTION_NAMES)
    check_fallback(resolve_retry_options(config, explicit).fallback, IS_ASYNC, is_flavour_function)
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
        # Listeners (a tracer) hear of the call around its attempts.
        listened = current._monitoring and current.monitor.listened
        if listened:
            current.monitor.call_started(name_of(fn))
        ended: BaseException | None = None
        try:
            return attempts(current, scope_options, retry, parent, bound, args, kwargs)
        except BaseException as error:
            ended = error
            raise
        finally:
            if listened:
                current.monitor.call_ended(name_of(fn), ended)

    def attempts(
        current: Any,
        scope_options: Any,
        retry: Any,
        parent: Any,
        bound: tuple[Any, ...],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
    ) -> Any:
        """The call's attempts: re-run while the error is worth it and budget is left."""
        attempt = 0
        # One budget for the call: every attempt and every backoff.
        deadline = scope_options.deadline
        deadline_at = None if deadline is None else monotonic() + deadline
        failed: BaseException | None = None  # the last attempt's error
        while True:
            if failed is not None and deadline_at is not None and monotonic() >= deadline_at:
                raise deadline_exceeded("before attempt %d" % (attempt + 1), failed)
            scope = SessionScope(current, scope_options, parent, deadline_at)
            try:
                with scope as session:
                    return fn(*bound, session, *args, **kwargs)
                return None  # a sessionscope.Rollback was raised, and swallowed by the scope
            except Exception as error:
                if isinstance(error, DeadlineExceededError) and error.__cause__ is None:
                    # It ran out between the check above and the scope's own: the news
                    # is still the last attempt's error.
                    error.__cause__ = failed
                    raise
                if not scope.opens_transaction:
                    raise  # only the caller owning the transaction may re-run it
                reason = retry_reason(error, retry.retry_on, retry.idempotent, scope.connecting)
                if reason is None:
                    raise
                if not scope.may_rerun:
                    note_once(
                        error,
                        "%s was not retried (%s): it committed part of its work itself "
                        "(session.commit()), which a re-run would apply again"
                        % (name_of(fn), reason),
                    )
                    raise
                if attempt >= retry.attempts:
                    if retry.fallback is not None:
                        return call_maybe_async(retry.fallback, error, *bound, *args, **kwargs)
                    note_once(
                        error,
                        "%s gave up after %d attempts (%s)" % (name_of(fn), attempt + 1, reason),
                    )
                    raise
                attempt += 1
                failed = error
                wait_before_retry(current, attempt, reason, error, retry, deadline_at)

    parameters = list(signature.parameters.values())
    del parameters[position]
    call_in_scope.__signature__ = signature.replace(  # type: ignore[attr-defined]
        parameters=parameters
    )
    return call_in_scope
