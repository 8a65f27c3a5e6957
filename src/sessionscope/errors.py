"""The exceptions sessionscope raises.

Every error of ours derives from :class:`SessionScopeError`; errors of the
database or the driver pass through unchanged (their types stay, so existing
``except`` clauses keep working). Two exceptions to the rule, Python's own
conventions: a function, callback or listener of the wrong kind (a generator
decorated with ``with_session``, a coroutine function given to a sync
``on_commit``) is a ``TypeError``, raised where it is passed in; and
:class:`Rollback` is not an error but a request, swallowed by the scope.
"""

from __future__ import annotations

__all__ = [
    "CommitOutcomeUnknownError",
    "ConcurrentSessionUseError",
    "ConfigurationError",
    "DeadlineExceededError",
    "NoActiveSessionError",
    "Rollback",
    "SessionScopeError",
    "TransactionOwnershipError",
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


class DeadlineExceededError(SessionScopeError, TimeoutError):
    """The call's ``deadline`` ran out: before an attempt or a backoff, or during one
    (a statement stopped by the capped server-side timeout, or in the async flavour
    the attempt cancelled). Never retried; the transaction was rolled back. The
    error that stopped the attempt, if any, is chained as ``__cause__``.
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


class TransactionOwnershipError(SessionScopeError, RuntimeError):
    """Code that does not own the transaction tried to commit or roll it back.

    Only the scope that opened a transaction (the outermost one, or a
    ``requires_new`` one) may end it early with ``session.commit()``,
    ``session.rollback()`` or ``session.close()``. A joined scope, a decorated
    function joining its caller's scope, or a ``nested`` scope (which owns a
    savepoint, not the transaction) would end work that belongs to an
    enclosing scope: the message names where that scope was opened. Nothing
    was committed or rolled back.
    """


class Rollback(Exception):
    """Raise it to roll back quietly.

    Leaving a scope that owns its transaction (or a ``nested`` scope, which
    owns its savepoint) it rolls that back and is swallowed: the ``with``
    block ends normally and a decorated function returns ``None``. Leaving a
    joined scope it goes on up to the scope that owns the transaction, which
    rolls back and swallows it.
    """
