"""Which database errors are worth retrying: one table, each entry with its source.

Errors are classified by SQLSTATE (PostgreSQL) or result code (SQLite), never
by the SQLAlchemy exception class: asyncpg surfaces a serialization failure
as a plain ``DBAPIError`` and psycopg as ``OperationalError``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from .errors import CommitOutcomeUnknownError

__all__ = [
    "CONNECTION_SQLSTATES",
    "commit_may_have_landed",
    "NEVER_RETRIED_SQLSTATES",
    "RETRIED_SQLSTATES",
    "SQLITE_RETRIED_CODES",
    "is_connection_error",
    "is_statement_timeout",
    "is_transient",
    "retry_reason",
    "sqlstate_of",
    "timeout_reason",
    "transient_reason",
]

# https://www.postgresql.org/docs/15/errcodes-appendix.html
RETRIED_SQLSTATES: Mapping[str, str] = {
    "40001": "serialization_failure: the transaction can succeed if re-run (PostgreSQL §13.2)",
    "40P01": "deadlock_detected: one victim is aborted, a re-run can succeed (PostgreSQL §13.3.4)",
}

# Connection lost or refused: safe to retry only if COMMIT was not sent.
CONNECTION_SQLSTATES: Mapping[str, str] = {
    "08000": "connection_exception",
    "08001": "sqlclient_unable_to_establish_sqlconnection",
    "08003": "connection_does_not_exist",
    "08004": "sqlserver_rejected_establishment_of_sqlconnection",
    "08006": "connection_failure",
    "08007": "transaction_resolution_unknown",
    "57P01": "admin_shutdown (server stopped or backend terminated)",
    "57P02": "crash_shutdown",
    "57P03": "cannot_connect_now (server starting up)",
    "53300": "too_many_connections",
}

NEVER_RETRIED_SQLSTATES: Mapping[str, str] = {
    "57014": "query_canceled / statement_timeout: re-running would time out again",
    "55P03": "lock_not_available / lock_timeout: the lock's holder may hold it as long again",
    "25P02": "in_failed_sql_transaction: a symptom, the cause was earlier",
}

# Errors not retried by default but classified, so that retry_on can opt in and the
# retry is counted under its reason.
TIMEOUT_REASONS: Mapping[str, str] = {"57014": "statement_timeout", "55P03": "lock_timeout"}

# Timeouts (asyncio's TimeoutError is the builtin one; SQLAlchemy's pool
# timeout is its own class) and commits of unknown outcome: never re-run.
_TIMEOUTS = (TimeoutError, PoolTimeoutError)
_NEVER_RETRIED = (*_TIMEOUTS, CommitOutcomeUnknownError)

# https://www.sqlite.org/rescode.html: the primary code is the low byte of the
# extended code (517 SQLITE_BUSY_SNAPSHOT & 0xff == 5 SQLITE_BUSY).
SQLITE_RETRIED_CODES: Mapping[int, str] = {
    5: "SQLITE_BUSY: another connection holds a conflicting lock",
    6: "SQLITE_LOCKED: a conflict within the same connection or shared cache",
}
# SQLITE_INTERRUPT: how a scope's statement_timeout stops a statement on SQLite.
_SQLITE_INTERRUPT = 9


def _driver_errors(exc: BaseException) -> list[BaseException]:
    """The exception and the driver exceptions behind it, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) < 8 and current not in chain:
        chain.append(current)
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return chain


def sqlstate_of(exc: BaseException) -> str | None:
    """The SQLSTATE carried by ``exc`` or the driver error behind it, if any."""
    for error in _driver_errors(exc):
        for attribute in ("sqlstate", "pgcode"):
            code = getattr(error, attribute, None)
            if isinstance(code, str) and len(code) == 5:
                return code
    return None


def _sqlite_code(exc: BaseException) -> int | None:
    for error in _driver_errors(exc):
        code = getattr(error, "sqlite_errorcode", None)
        if isinstance(code, int):
            return code & 0xFF
    return None


def timeout_reason(exc: BaseException) -> str | None:
    """``"statement_timeout"`` or ``"lock_timeout"`` for the errors of those timeouts."""
    code = sqlstate_of(exc)
    if code is not None:
        return TIMEOUT_REASONS.get(code)
    return "statement_timeout" if _sqlite_code(exc) == _SQLITE_INTERRUPT else None


def is_statement_timeout(exc: BaseException) -> bool:
    return timeout_reason(exc) == "statement_timeout"


def is_connection_error(exc: BaseException) -> bool:
    """The connection was lost, refused or invalidated."""
    if getattr(exc, "connection_invalidated", False):
        return True
    code = sqlstate_of(exc)
    if code is not None:
        return code in CONNECTION_SQLSTATES or code.startswith("08")
    # Timeouts (TimeoutError, asyncio's included) are deliberately not here.
    return any(
        isinstance(error, ConnectionError) or _is_psycopg_lost_connection(error)
        for error in _driver_errors(exc)
    )


def _is_psycopg_lost_connection(error: BaseException) -> bool:
    """psycopg reports a connection it lost before the server said why
    ("connection socket closed", "server closed the connection unexpectedly")
    as an OperationalError without SQLSTATE; every error the server sends has
    one. SQLAlchemy does not always see it as a disconnect: the connection may
    not be marked broken yet when it asks."""
    if getattr(error, "sqlstate", "") is not None:
        return False
    return any(
        cls.__name__ == "OperationalError" and cls.__module__.startswith("psycopg")
        for cls in type(error).__mro__
    )


def transient_reason(exc: BaseException, connecting: bool = False) -> str | None:
    """Why re-running the whole transaction may succeed where this attempt failed.

    One of ``"serialization_failure"``, ``"deadlock"``, ``"sqlite_busy"``,
    ``"connection"``, or None when a re-run would not help (or must not happen).
    The caller must know that COMMIT had not been sent: a connection lost while
    it was in flight leaves the outcome unknown (``CommitOutcomeUnknownError``,
    never transient here). ``connecting`` says the error came while getting a
    connection: drivers report a refused connection without any code (psycopg
    as a bare OperationalError), and nothing can have been done yet.
    """
    if not isinstance(exc, Exception) or isinstance(exc, _NEVER_RETRIED):
        return None  # cancellation, KeyboardInterrupt, SystemExit, timeouts: never
    code = sqlstate_of(exc)
    if code is not None:
        if code in NEVER_RETRIED_SQLSTATES:
            return None
        if code == "40001":
            return "serialization_failure"
        if code == "40P01":
            return "deadlock"
    sqlite_code = _sqlite_code(exc)
    if sqlite_code is not None:
        return "sqlite_busy" if sqlite_code in SQLITE_RETRIED_CODES else None
    if is_connection_error(exc):
        return "connection"
    if connecting and code is None and isinstance(exc, DBAPIError | OSError):
        return "connection"  # refused, reset, unreachable: a code would say otherwise
    return None


def retry_reason(
    exc: BaseException,
    retry_on: Callable[[BaseException], bool | None] | None = None,
    idempotent: bool = False,
    connecting: bool = False,
) -> str | None:
    """Why a decorated function may be re-run after ``exc``, or None if it may not.

    Cancellations and timeouts never are, whatever ``retry_on`` says. Then
    ``retry_on(exc)`` decides if it returns True or False; None (or no
    ``retry_on``) defers to the table. A commit of unknown outcome is re-run
    only when the work is declared idempotent.
    """
    if not isinstance(exc, Exception) or isinstance(exc, _TIMEOUTS):
        return None
    if retry_on is not None:
        verdict = retry_on(exc)
        if verdict is not None:
            return (timeout_reason(exc) or "retry_on") if verdict else None
    if isinstance(exc, CommitOutcomeUnknownError):
        return "commit_outcome_unknown" if idempotent else None
    return transient_reason(exc, connecting)


def commit_may_have_landed(error: BaseException) -> bool:
    """Whether COMMIT may have reached the server without its answer reaching us.

    Cancelled or interrupted while waiting, a driver's timeout, or a lost
    connection: then nobody knows. Anything else is the server's own answer.
    """
    return (
        not isinstance(error, Exception)
        or isinstance(error, TimeoutError)
        or is_connection_error(error)
    )


def is_transient(exc: BaseException) -> bool:
    """Whether re-running the whole transaction may succeed where this attempt failed.

    True for serialization failures, deadlocks, SQLite BUSY/LOCKED and lost or
    refused connections; never for integrity errors, statement timeouts,
    cancellations, or a commit whose outcome is unknown.
    """
    return transient_reason(exc) is not None
