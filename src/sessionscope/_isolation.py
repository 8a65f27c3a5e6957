"""What a manager does differently while a test isolates it (``sessionscope.testing``).

An isolation holds one connection per manager, in a transaction it rolls back
at its end. While it is active, every outermost scope of the manager gets a
session bound to that connection with SQLAlchemy's
``join_transaction_mode="create_savepoint"``: its transaction is a SAVEPOINT,
its commit releases it, its rollback rolls back to it, and the body's own
``session.commit()`` does the same and goes on in a new savepoint. A nested
isolation is a savepoint of the enclosing one's transaction, on its connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from .errors import ConfigurationError, SessionScopeError

__all__ = ["FAULTS", "ON_COMMIT_MODES", "TURN", "Faults", "Isolated", "check_isolation_arguments"]

OnCommit = Literal["run", "capture"]
ON_COMMIT_MODES: tuple[OnCommit, ...] = ("run", "capture")


# What a scope waits for when another holds the isolation's connection.
TURN = (
    "the connection of a test's isolation (sessionscope.testing), which runs one scope "
    "at a time: code started inside a scope (a thread, a task) that opens a scope of "
    "its own waits for that scope to end; pass it the session instead"
)

# The faults iso.inject() can make a virtual COMMIT fail with: the SQLSTATE the
# server raises, and whether it comes while COMMIT is in flight (else just before).
FAULTS: dict[str, tuple[str, bool]] = {
    "serialization_failure": ("40001", True),
    "deadlock": ("40P01", True),
    "connection_lost": ("08006", False),
    "commit_outcome_unknown": ("08006", True),
}


class Faults:
    """The faults still to inject, in order: each is used by one virtual COMMIT."""

    def __init__(self) -> None:
        self.pending: list[str] = []

    def add(self, fault: object, times: object, dialects: set[str]) -> None:
        if fault not in FAULTS:
            raise ConfigurationError(
                f"inject({fault!r}): choose one of {', '.join(repr(f) for f in FAULTS)}"
            )
        if not isinstance(times, int) or isinstance(times, bool) or times < 1:
            raise ConfigurationError(f"inject(times={times!r}): a whole number, 1 or more")
        others = sorted(dialects - {"postgresql"})
        if others:
            raise ConfigurationError(
                f"inject() is available on PostgreSQL; not yet on {', '.join(others)}, where "
                "the driver's own errors cannot be raised on demand in an isolation"
            )
        self.pending.extend([str(fault)] * times)

    def statement(self, in_flight: bool) -> str | None:
        """The SQL that makes the server raise the next fault, if it is due now."""
        if not self.pending:
            return None
        fault = self.pending[0]
        sqlstate, at_commit = FAULTS[fault]
        if at_commit is not in_flight:
            return None
        self.pending.pop(0)
        return (
            f"DO $$ BEGIN RAISE EXCEPTION 'sessionscope.testing injected {fault}' "
            f"USING ERRCODE = '{sqlstate}'; END $$"
        )


class Isolated:
    """A manager's state under one isolation (``manager._isolation``)."""

    __slots__ = (
        "capture",
        "connection",
        "faults",
        "loop",
        "outer",
        "transaction",
        "turns",
        "undo_read_only",
    )

    def __init__(
        self,
        connection: Any,
        transaction: Any,
        outer: Isolated | None,
        turns: Any,
        capture: list[Callable[[], object]] | None,
        loop: object,
        faults: Faults,
    ) -> None:
        self.connection = connection  # the flavour's Connection
        self.transaction = transaction  # rolled back at the isolation's end
        self.outer = outer  # the enclosing isolation's, restored at the end
        # One statement at a time on the one connection: the scopes of concurrent
        # tasks or threads take turns, as on a pool of one connection.
        self.turns = turns
        # The list on_commit callbacks go to instead of running (on_commit="capture").
        self.capture = capture
        # The event loop the connection belongs to (async), or None (sync).
        self.loop = loop
        self.faults = faults  # the isolation's: iso.inject()
        # What ends a read-only scope's mode beside rolling back to its savepoint: on
        # SQLite, its pragma (PostgreSQL takes SET TRANSACTION READ ONLY back itself).
        dialect = connection.dialect.name
        self.undo_read_only = "PRAGMA query_only = OFF" if dialect == "sqlite" else None

    def session(self, manager: Any, loop: object) -> Any:
        """A session of ``manager`` whose transactions are savepoints on the connection."""
        if loop is not self.loop:
            raise SessionScopeError(
                f"a scope of {manager.name} was opened in another event loop than the "
                "test's isolation, whose connection belongs to the test's loop (Starlette's "
                "TestClient runs the app in a thread and loop of its own): call the app "
                "with httpx's AsyncClient(transport=ASGITransport(app)) in the test instead"
            )
        return manager.sessionmaker(bind=self.connection, join_transaction_mode="create_savepoint")


def check_isolation_arguments(
    managers: tuple[Any, ...], manager_class: type[Any], on_commit: object, function: str
) -> None:
    """The earliest clear error for what an isolation is asked to do."""
    if not managers:
        raise ConfigurationError(f"{function}() needs at least one {manager_class.__name__}")
    for manager in managers:
        if not isinstance(manager, manager_class):
            raise ConfigurationError(
                f"{function}() takes {manager_class.__name__} objects, got {manager!r}"
            )
    if len({id(manager) for manager in managers}) != len(managers):
        raise ConfigurationError(f"{function}() got the same manager twice")
    if on_commit not in ON_COMMIT_MODES:
        raise ConfigurationError(
            f"on_commit={on_commit!r}: choose 'run' (callbacks run when the scope's "
            "savepoint is released, as after a COMMIT) or 'capture' (kept for the test)"
        )
