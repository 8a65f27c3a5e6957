"""What a scope's transactions start with: settings, timeouts, a deadline (§13).

A scope's ``settings`` and timeouts apply to every transaction it starts: the
first, the one after the body's own ``session.commit()``, each retry's. On
PostgreSQL they are transaction-local (``set_config(name, value, true)``, the
function form of ``SET LOCAL``), all in one statement, so nothing outlives the
transaction, whoever uses the connection next (a PgBouncer client included).
On SQLite the statement timeout is a progress handler and the lock timeout the
busy timeout (``_sqlite_limits.py``), both undone as the connection goes back
to the pool.

A ``deadline`` is a time budget from the call: every server-side statement
timeout of an attempt is capped to what is left, no attempt starts and no
backoff sleeps past it, and the async flavour also bounds each attempt on the
client side. Validation happens where the options are given (``_options.py``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from time import monotonic
from typing import Any, Literal

from .errors import (
    CommitOutcomeUnknownError,
    ConfigurationError,
    DeadlineExceededError,
    SessionScopeError,
)

__all__ = [
    "SQLITE_BEGINS",
    "Setup",
    "SettingValue",
    "check_deadline",
    "check_settings",
    "check_sqlite_begin",
    "check_timeout",
    "deadline_exceeded",
    "placeholder",
    "postgres_start",
    "time_left",
]

SettingValue = str | int | float | bool
SqliteBegin = Literal["deferred", "immediate"]
SQLITE_BEGINS: tuple[SqliteBegin, ...] = ("deferred", "immediate")

# PostgreSQL's custom settings are "prefix.name"; built-in ones have no dot. The
# name is written into the statement, so it is checked, never quoted.
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*\Z")
# The longest timeout both databases take: PostgreSQL's and SQLite's are 32-bit
# milliseconds (about 24.8 days).
MAX_TIMEOUT = (2**31 - 1) // 1000


def check_settings(value: object) -> tuple[tuple[str, str], ...]:
    """``settings``: a mapping of names to values, as the text set_config() takes."""
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"settings must be a mapping of names to values, got {value!r}")
    checked: list[tuple[str, str]] = []
    for name, item in value.items():
        if not isinstance(name, str) or not _SETTING_NAME.match(name):
            raise ConfigurationError(
                f"settings: {name!r} is not a setting name (words of letters, digits and "
                "'_', not starting with a digit, joined by single dots; e.g. 'app.tenant_id')"
            )
        checked.append((name, _setting_text(name, item)))
    return tuple(sorted(checked))  # in one order: a joined scope compares them


def _setting_text(name: str, value: object) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, str):
        if "\x00" in value:
            raise ConfigurationError(f"settings[{name!r}] cannot hold a NUL character")
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return str(value)
    raise ConfigurationError(f"settings[{name!r}] must be a str, int, float or bool, got {value!r}")


def check_timeout(name: str, value: object) -> float | None:
    """A timeout in seconds: a finite number above 0, or None for none."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise ConfigurationError(
            f"{name} must be a number of seconds above 0 and at most {MAX_TIMEOUT} "
            f"(or None), got {value!r}"
        )
    return float(value)


def check_deadline(value: object) -> float | None:
    return check_timeout("deadline", value)


def check_sqlite_begin(value: object) -> SqliteBegin:
    if value not in SQLITE_BEGINS:
        raise ConfigurationError(
            f"sqlite_begin must be 'deferred' or 'immediate', got {value!r}"
            + (
                " (EXCLUSIVE would also lock out readers, for no gain in WAL mode)"
                if isinstance(value, str) and value.lower() == "exclusive"
                else ""
            )
        )
    return value


@dataclasses.dataclass(frozen=True, slots=True)
class Setup:
    """The settings and timeouts every transaction of a scope starts with."""

    settings: tuple[tuple[str, str], ...] = ()
    statement_timeout: float | None = None
    lock_timeout: float | None = None
    idle_in_transaction_timeout: float | None = None
    sqlite_begin: SqliteBegin = "deferred"

    @property
    def is_empty(self) -> bool:
        return self == _EMPTY

    @property
    def has_limits(self) -> bool:
        """Whether SQLite needs its statement clock or busy timeout changed."""
        return self.statement_timeout is not None or self.lock_timeout is not None


_EMPTY = Setup()


def time_left(deadline_at: float | None) -> float | None:
    """Seconds left before ``deadline_at`` (a ``time.monotonic()`` time), or None."""
    return None if deadline_at is None else deadline_at - monotonic()


def deadline_exceeded(what: str, cause: BaseException | None = None) -> SessionScopeError:
    """The error for a deadline that ran out ``what`` (e.g. "before retry 2"), after
    ``cause``: a commit of unknown outcome stays that, the more important news."""
    if isinstance(cause, CommitOutcomeUnknownError):
        return cause
    error = DeadlineExceededError(f"the deadline ran out {what}")
    if cause is not None:
        error.__cause__ = cause
    return error


def _milliseconds(seconds: float) -> str:
    # PostgreSQL reads a bare number as milliseconds; 0 would mean "no timeout".
    return str(max(1, math.ceil(seconds * 1000)))


def postgres_start(
    setup: Setup | None, read_only: bool, deadline_at: float | None, paramstyle: str
) -> tuple[str, tuple[Any, ...]] | None:
    """The one statement that starts a PostgreSQL transaction of the scope, and its
    parameters: the settings' values are bound, the rest is checked text."""
    pairs: list[tuple[str, str | None]] = []
    if read_only:
        pairs.append(("transaction_read_only", "on"))
    statement_timeout = None
    if setup is not None:
        pairs.extend(setup.settings)
        statement_timeout = setup.statement_timeout
        if setup.lock_timeout is not None:
            pairs.append(("lock_timeout", _milliseconds(setup.lock_timeout)))
        if setup.idle_in_transaction_timeout is not None:
            pairs.append(
                (
                    "idle_in_transaction_session_timeout",
                    _milliseconds(setup.idle_in_transaction_timeout),
                )
            )
    left = time_left(deadline_at)
    if left is not None:
        if left <= 0:
            raise deadline_exceeded("before the transaction began")
        left = min(left, MAX_TIMEOUT)
        statement_timeout = left if statement_timeout is None else min(statement_timeout, left)
    if statement_timeout is not None:
        pairs.append(("statement_timeout", _milliseconds(statement_timeout)))
    if not pairs:
        return None
    user_values = {name for name, _ in setup.settings} if setup is not None else set()
    calls: list[str] = []
    params: list[Any] = []
    for name, value in pairs:
        if name in user_values:
            params.append(value)
            calls.append(f"set_config('{name}', {placeholder(paramstyle, len(params))}, true)")
        else:
            calls.append(f"set_config('{name}', '{value}', true)")
    return "SELECT " + ", ".join(calls), tuple(params)


def placeholder(paramstyle: str, number: int) -> str:
    if paramstyle == "numeric_dollar":
        return f"${number}"
    if paramstyle in ("format", "pyformat"):
        return "%s"
    if paramstyle == "numeric":
        return f":{number}"
    return "?"
