"""Classification of driver errors that a live fault produces only now and then.

A backend terminated mid-transaction reaches psycopg either as the server's
57P01 message or, when the socket closes first, as an OperationalError
without SQLSTATE (seen in CI as "connection socket closed"). Both mean the
connection is gone before COMMIT, so re-running the transaction is safe. The
errors are the driver's own classes, built as psycopg builds them.
"""

from __future__ import annotations

import sqlite3

import psycopg
import pytest
from sqlalchemy.exc import OperationalError

from sessionscope._transient import is_connection_error, transient_reason


def _wrapped(driver_error: BaseException) -> OperationalError:
    return OperationalError("SELECT 1", {}, driver_error)


@pytest.mark.parametrize(
    "message",
    ["connection socket closed", "server closed the connection unexpectedly"],
)
def test_a_psycopg_connection_lost_without_sqlstate_is_a_connection_error(message: str) -> None:
    error = _wrapped(psycopg.OperationalError(message))
    assert is_connection_error(error)
    assert transient_reason(error) == "connection"


def test_a_psycopg_error_the_server_sent_is_judged_by_its_sqlstate() -> None:
    unique = psycopg.errors.UniqueViolation("duplicate key")
    assert unique.sqlstate == "23505"
    assert transient_reason(_wrapped(unique)) is None


def test_a_sqlite_operational_error_is_not_a_lost_connection() -> None:
    error = sqlite3.OperationalError("no such table: users")
    error.sqlite_errorcode = 1  # type: ignore[attr-defined]
    assert not is_connection_error(_wrapped(error))
    assert transient_reason(_wrapped(error)) is None
