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

__all__ = ["ON_COMMIT_MODES", "Isolated", "check_isolation_arguments"]

OnCommit = Literal["run", "capture"]
ON_COMMIT_MODES: tuple[OnCommit, ...] = ("run", "capture")


class Isolated:
    """A manager's state under one isolation (``manager._isolation``)."""

    __slots__ = ("capture", "connection", "loop", "outer", "transaction", "turns")

    def __init__(
        self,
        connection: Any,
        transaction: Any,
        outer: Isolated | None,
        turns: Any,
        capture: list[Callable[[], object]] | None,
        loop: object,
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
