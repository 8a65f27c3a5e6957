"""Per-call options of ``session_scope(...)`` and ``with_session(...)``, validated once.

Options are checked when the scope object or the decorator is built, never
later: a typo must fail at the line that made it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Literal, TypedDict

from ._replicas import check_token
from ._settings import (
    SettingValue,
    Setup,
    SqliteBegin,
    check_deadline,
    check_settings,
    check_sqlite_begin,
    check_timeout,
)
from .config import SessionConfig, check_bool, check_delay, check_retry_attempts
from .errors import ConfigurationError

__all__ = [
    "ISOLATION_LEVELS",
    "PROPAGATIONS",
    "Propagation",
    "RetryOptions",
    "ScopeKwargs",
    "ScopeOptions",
    "SessionKwargs",
    "check_joinable",
    "resolve_retry_options",
    "resolve_scope_options",
]

Propagation = Literal["required", "nested", "requires_new", "mandatory"]
PROPAGATIONS: tuple[Propagation, ...] = ("required", "nested", "requires_new", "mandatory")

# AUTOCOMMIT is left out on purpose: a scope is a transaction.
ISOLATION_LEVELS = ("SERIALIZABLE", "REPEATABLE READ", "READ COMMITTED", "READ UNCOMMITTED")


class ScopeKwargs(TypedDict, total=False):
    """Keyword options of ``session_scope(...)``."""

    propagation: Propagation
    read_only: bool
    isolation_level: str
    auto_commit: bool
    auto_rollback: bool
    settings: Mapping[str, SettingValue]
    statement_timeout: float | None
    lock_timeout: float | None
    idle_in_transaction_timeout: float | None
    sqlite_begin: SqliteBegin
    deadline: float | None
    after: str | Callable[[], str | None] | None


class SessionKwargs(ScopeKwargs, total=False):
    """Keyword options of ``with_session(...)``: those of a scope plus retries."""

    retry_attempts: int
    retry_delay: float
    retry_max_delay: float
    retry_jitter: bool
    retry_on: Callable[[BaseException], bool | None] | None
    idempotent: bool
    fallback: Callable[..., Any] | None


_SCOPE_NAMES = frozenset(ScopeKwargs.__annotations__)
# The options that say how a transaction starts (Setup's fields), and so cannot
# change in a scope that joins one.
_SETUP_NAMES = frozenset(
    ("settings", "statement_timeout", "lock_timeout", "idle_in_transaction_timeout", "sqlite_begin")
)
_SESSION_NAMES = frozenset(SessionKwargs.__annotations__) | _SCOPE_NAMES


@dataclasses.dataclass(frozen=True, slots=True)
class ScopeOptions:
    propagation: Propagation
    read_only: bool
    isolation_level: str | None
    auto_commit: bool
    auto_rollback: bool
    # How often a scope that opens a session retries getting its connection:
    # a with-block per the config, a decorated function never (it retries whole).
    connect_retries: int
    # What each transaction starts with (None: nothing beyond BEGIN), the names
    # of those the caller asked for itself, and the time budget of the call.
    setup: Setup | None = None
    asked: frozenset[str] = frozenset()
    deadline: float | None = None
    # A read-only scope's commit token (``after=``): the WAL position it must see, or
    # a function giving the token (or None) as each scope starts.
    after: int | Callable[[], str | None] | None = None
    # Read-only at the default level with nothing to set up: may run without BEGIN
    # and COMMIT (the read-only fast path, _replicas.py).
    fast_read: bool = False


@dataclasses.dataclass(frozen=True, slots=True)
class RetryOptions:
    attempts: int
    delay: float
    max_delay: float
    jitter: bool
    retry_on: Callable[[BaseException], bool | None] | None
    idempotent: bool
    fallback: Callable[..., Any] | None


def _check_names(options: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ConfigurationError(
            f"unknown option(s) {', '.join(map(repr, unknown))} for {where}; "
            f"expected some of: {', '.join(sorted(allowed))}"
        )


def normalize_isolation_level(value: object) -> str:
    if isinstance(value, str):
        level = " ".join(value.replace("_", " ").upper().split())
        if level in ISOLATION_LEVELS:
            return level
    raise ConfigurationError(
        f"isolation_level must be one of {', '.join(map(repr, ISOLATION_LEVELS))}, got {value!r}"
    )


def defaults_from(config: SessionConfig) -> ScopeOptions:
    return ScopeOptions(
        "required",
        False,
        None,
        config.auto_commit,
        config.auto_rollback,
        config.retry_attempts,
        setup=_setup(config, {}),
    )


def _setup(config: SessionConfig, options: Mapping[str, Any]) -> Setup | None:
    if _SETUP_NAMES.isdisjoint(options) and (
        config.statement_timeout is None
        and config.lock_timeout is None
        and config.idle_in_transaction_timeout is None
        and config.sqlite_begin == "deferred"
    ):
        return None  # the common case, without building one to compare
    settings = options.get("settings")
    setup = Setup(
        settings=() if settings is None else check_settings(settings),
        statement_timeout=check_timeout(
            "statement_timeout", options.get("statement_timeout", config.statement_timeout)
        ),
        lock_timeout=check_timeout(
            "lock_timeout", options.get("lock_timeout", config.lock_timeout)
        ),
        idle_in_transaction_timeout=check_timeout(
            "idle_in_transaction_timeout",
            options.get("idle_in_transaction_timeout", config.idle_in_transaction_timeout),
        ),
        sqlite_begin=check_sqlite_begin(options.get("sqlite_begin", config.sqlite_begin)),
    )
    return None if setup.is_empty else setup


def resolve_scope_options(
    config: SessionConfig,
    options: Mapping[str, Any],
    where: str = "session_scope()",
    allowed: frozenset[str] = _SCOPE_NAMES,
    connect_retries: int | None = None,
) -> ScopeOptions:
    """The options of a scope; ``where`` names the call in error messages.

    ``connect_retries`` defaults to the config's ``retry_attempts``; scopes of
    decorated functions pass 0, as the decorator re-runs the whole function.
    """
    _check_names(options, allowed, where)
    propagation = options.get("propagation", "required")
    if propagation not in PROPAGATIONS:
        raise ConfigurationError(
            f"unknown propagation {propagation!r}; expected one of: {', '.join(PROPAGATIONS)}"
        )
    level = options.get("isolation_level")
    isolation_level = None if level is None else normalize_isolation_level(level)
    read_only = check_bool("read_only", options.get("read_only", False))
    given = options.get("after")
    # A function is called as each scope starts (a token kept per request, say).
    after = given if callable(given) else check_token(given)
    if after is not None and not read_only:
        raise ConfigurationError(
            f"after={options['after']!r} is for read-only scopes (read_only=True), which may "
            "run on a replica; a read-write scope runs on the primary, which has every commit"
        )
    resolved = ScopeOptions(
        propagation=propagation,
        read_only=read_only,
        isolation_level=isolation_level,
        auto_commit=check_bool("auto_commit", options.get("auto_commit", config.auto_commit)),
        auto_rollback=check_bool(
            "auto_rollback", options.get("auto_rollback", config.auto_rollback)
        ),
        connect_retries=config.retry_attempts if connect_retries is None else connect_retries,
        setup=_setup(config, options),
        asked=_SETUP_NAMES.intersection(options),
        deadline=check_deadline(options.get("deadline")),
        after=after,
    )
    if (
        config.read_only_fast_path
        and resolved.read_only
        and isolation_level is None
        and resolved.setup is None
        and resolved.deadline is None
    ):
        resolved = dataclasses.replace(resolved, fast_read=True)
    return resolved


def _check_callable(name: str, value: object) -> Any:
    if value is not None and not callable(value):
        raise ConfigurationError(f"{name} must be a callable or None, got {value!r}")
    return value


def resolve_retry_options(config: SessionConfig, options: Mapping[str, Any]) -> RetryOptions:
    """The retry options of ``with_session``; call after :func:`resolve_scope_options`."""
    _check_names(options, _SESSION_NAMES, "with_session()")
    return RetryOptions(
        attempts=check_retry_attempts(
            "retry_attempts", options.get("retry_attempts", config.retry_attempts)
        ),
        delay=check_delay("retry_delay", options.get("retry_delay", config.retry_delay)),
        max_delay=check_delay(
            "retry_max_delay", options.get("retry_max_delay", config.retry_max_delay)
        ),
        jitter=check_bool("retry_jitter", options.get("retry_jitter", config.retry_jitter)),
        retry_on=_check_callable("retry_on", options.get("retry_on")),
        idempotent=check_bool("idempotent", options.get("idempotent", False)),
        fallback=_check_callable("fallback", options.get("fallback")),
    )


SESSION_OPTION_NAMES = _SESSION_NAMES
SCOPE_OPTION_NAMES = _SCOPE_NAMES


def check_joinable(
    isolation_level: str | None, read_only: bool, setup: Setup | None, options: ScopeOptions
) -> None:
    """A scope joining a transaction (or opening a savepoint in it) cannot change
    what the transaction is: its isolation level, read-write to read-only, what
    it started with, or its time budget."""
    if options.asked:
        theirs = setup or Setup()
        ours = options.setup or Setup()
        for name in sorted(options.asked):
            if getattr(ours, name) != getattr(theirs, name):
                raise ConfigurationError(
                    f"{name}={getattr(ours, name)!r} can only be set where a transaction "
                    f"starts; this scope would run in the enclosing transaction, which has "
                    f"{name}={getattr(theirs, name)!r}. Use propagation='requires_new' for a "
                    "transaction of its own."
                )
    if options.deadline is not None:
        raise ConfigurationError(
            f"deadline={options.deadline!r} can only be set where a transaction starts; this "
            "scope would run in the enclosing transaction, bounded by its caller's. Use "
            "propagation='requires_new' for a transaction of its own."
        )
    if options.after is not None:
        raise ConfigurationError(
            "after= can only be given where a transaction starts; this scope would run in "
            "the enclosing transaction, on its connection. Give it to the outermost scope."
        )
    if options.isolation_level is not None and options.isolation_level != isolation_level:
        raise ConfigurationError(
            f"isolation_level={options.isolation_level!r} can only be set where a transaction "
            f"starts; this scope would run in the enclosing transaction "
            f"(isolation_level={isolation_level!r}). Use propagation='requires_new' for a "
            "transaction of its own."
        )
    if options.read_only and not read_only:
        raise ConfigurationError(
            "read_only=True can only be set where a transaction starts; the enclosing "
            "transaction is read-write. Use propagation='requires_new' for a read-only one."
        )
