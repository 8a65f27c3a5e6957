"""The exceptions sessionscope raises.

Every error of ours derives from :class:`SessionScopeError`; errors of the
database or the driver pass through unchanged (their types stay, so existing
``except`` clauses keep working).
"""

from __future__ import annotations

__all__ = [
    "CommitOutcomeUnknownError",
    "ConcurrentSessionUseError",
    "ConfigurationError",
    "NoActiveSessionError",
    "SessionScopeError",
    "TransactionRolledBackError",
]


class SessionScopeError(Exception):
    """Base class of every error raised by sessionscope itself."""


class ConfigurationError(SessionScopeError, ValueError):
    """An option, a bind or a call does not make sense; the message names the value."""


class NoActiveSessionError(SessionScopeError, LookupError):
    """Something needed an active scope in this task or thread and there was none."""


class CommitOutcomeUnknownError(SessionScopeError):
    """The connection was lost while COMMIT was in flight: it may or may not have happened.

    The original error is chained as ``__cause__``. The work is not retried
    unless it was declared ``idempotent=True``.
    """


class TransactionRolledBackError(SessionScopeError):
    """The transaction (or savepoint) was rolled back although its scope exited cleanly.

    Raised when an exception left a joined scope, marking the transaction
    rollback-only, and some code in between swallowed it. The exception that
    marked it is chained as ``__cause__``.
    """


class ConcurrentSessionUseError(SessionScopeError, RuntimeError):
    """One AsyncSession was used by two tasks at once.

    A session and its connection run one operation at a time; interleaving two
    tasks' statements in one transaction silently mixes their work. Give each
    task its own scope (a task started inside a scope does not join it).
    """
