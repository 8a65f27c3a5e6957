"""``SessionConfig``: the options a manager applies to every scope it opens."""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections.abc import Mapping
from typing import Any

from ._settings import SqliteBegin, check_sqlite_begin, check_timeout
from .errors import ConfigurationError

__all__ = ["LOG_LEVELS", "SessionConfig", "check_bool", "check_delay", "check_retry_attempts"]

LOG_LEVELS: Mapping[str, int] = {
    "DEBUG": logging.DEBUG,
    "INFO": logging.INFO,
    "WARNING": logging.WARNING,
    "ERROR": logging.ERROR,
    "CRITICAL": logging.CRITICAL,
}

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def check_bool(name: str, value: object) -> bool:
    if not isinstance(value, bool):
        raise ConfigurationError(f"{name} must be True or False, got {value!r}")
    return value


def check_retry_attempts(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ConfigurationError(f"{name} must be an int >= 0, got {value!r}")
    return value


def check_delay(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(f"{name} must be a finite number of seconds >= 0, got {value!r}")
    return float(value)


def _check_log_level(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in LOG_LEVELS:
        raise ConfigurationError(f"log_level must be one of {', '.join(LOG_LEVELS)}, got {value!r}")
    return value.upper()


@dataclasses.dataclass(frozen=True, slots=True)
class SessionConfig:
    """Options of a manager. Per-call options of ``session_scope``/``with_session`` override them.

    The first six fields and their defaults are the settings this library
    started from; invalid values raise :class:`ConfigurationError` naming the
    field. ``auto_rollback=False`` is accepted for that reason but changes nothing:
    an exception leaving a scope always rolls back, because nothing may be
    committed, nor left open, on a path that raised.
    """

    auto_commit: bool = True
    auto_rollback: bool = True
    enable_monitoring: bool = True
    log_level: str = "INFO"
    retry_attempts: int = 3
    retry_delay: float = 1.0
    retry_max_delay: float = 30.0
    retry_jitter: bool = True
    slow_transaction_seconds: float = 1.0
    # Defaults of the scopes' transaction options (README "Settings and deadlines").
    statement_timeout: float | None = None
    lock_timeout: float | None = None
    idle_in_transaction_timeout: float | None = None
    sqlite_begin: SqliteBegin = "deferred"
    # Read replicas (README "Replicas, poolers and failover"), in seconds: the replay
    # lag over which a replica is skipped, how long one that refused a connection is
    # skipped, how often each one's lag is learned, and how long a scope with
    # ``after=token`` waits for a replica to replay it before it runs on the primary.
    max_replica_lag: float = 5.0
    replica_cool_down: float = 5.0
    replica_check_interval: float = 1.0
    replica_wait: float = 0.5
    # Read-only scopes without BEGIN and COMMIT where that reads the same (README
    # "The read-only fast path"): opt-in, for what it changes.
    read_only_fast_path: bool = False
    # Who holds the pool (README "Monitoring"; monitoring on): warn when a checkout
    # waits this long, listing the scopes holding connections; and when a scope holds
    # one this long without a statement (None: off).
    slow_checkout_seconds: float | None = 1.0
    idle_scope_seconds: float | None = None

    def __post_init__(self) -> None:
        for name in (
            "auto_commit",
            "auto_rollback",
            "enable_monitoring",
            "retry_jitter",
            "read_only_fast_path",
        ):
            check_bool(name, getattr(self, name))
        check_retry_attempts("retry_attempts", self.retry_attempts)
        for name in (
            "retry_delay",
            "retry_max_delay",
            "slow_transaction_seconds",
            "max_replica_lag",
            "replica_cool_down",
            "replica_check_interval",
            "replica_wait",
        ):
            object.__setattr__(self, name, check_delay(name, getattr(self, name)))
        object.__setattr__(self, "log_level", _check_log_level(self.log_level))
        for name in _OPTIONAL_SECONDS:
            object.__setattr__(self, name, check_timeout(name, getattr(self, name)))
        check_sqlite_begin(self.sqlite_begin)

    @property
    def log_level_number(self) -> int:
        return LOG_LEVELS[self.log_level]

    def replace(self, **changes: Any) -> SessionConfig:
        """A copy with some fields changed, validated like the original."""
        unknown = sorted(set(changes) - _FIELD_NAMES)
        if unknown:
            raise ConfigurationError(f"unknown SessionConfig field(s): {', '.join(unknown)}")
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_env(
        cls, prefix: str = "SESSIONSCOPE_", environ: Mapping[str, str] | None = None
    ) -> SessionConfig:
        """Read the fields from ``<prefix><FIELD NAME IN UPPER CASE>`` variables.

        Unset variables keep their defaults; a value that does not parse raises
        :class:`ConfigurationError` naming the variable. Other variables with
        the prefix are ignored (the prefix is shared with other settings).
        """
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for field in dataclasses.fields(cls):
            variable = prefix + field.name.upper()
            raw = env.get(variable)
            if raw is None:
                continue
            if field.name in _OPTIONAL_SECONDS:
                values[field.name] = _parse_seconds_or_none(variable, raw.strip())
            else:
                values[field.name] = _parse(variable, raw.strip(), field.default)
        try:
            return cls(**values)
        except ConfigurationError as exc:
            raise ConfigurationError(
                f"{exc} (read from the environment, prefix {prefix!r})"
            ) from None


_FIELD_NAMES = frozenset(f.name for f in dataclasses.fields(SessionConfig))
_OPTIONAL_SECONDS = (
    "statement_timeout",
    "lock_timeout",
    "idle_in_transaction_timeout",
    "slow_checkout_seconds",
    "idle_scope_seconds",
)


def _parse_seconds_or_none(variable: str, raw: str) -> float | None:
    if raw.lower() in ("", "none"):
        return None
    try:
        return float(raw)
    except ValueError:
        raise ConfigurationError(
            f"{variable} must be a number of seconds (or none), got {raw!r}"
        ) from None


def _parse(variable: str, raw: str, default: object) -> object:
    """Parse an environment value as the type of the field's default."""
    if isinstance(default, bool):
        if raw.lower() in _TRUE:
            return True
        if raw.lower() in _FALSE:
            return False
        raise ConfigurationError(f"{variable} must be true or false, got {raw!r}")
    if isinstance(default, int):
        try:
            return int(raw)
        except ValueError:
            raise ConfigurationError(f"{variable} must be an integer, got {raw!r}") from None
    if isinstance(default, float):
        try:
            return float(raw)
        except ValueError:
            raise ConfigurationError(f"{variable} must be a number, got {raw!r}") from None
    return raw
