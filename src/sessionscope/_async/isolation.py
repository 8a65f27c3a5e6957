"""A test's isolation of this flavour's managers: see ``_isolation.py`` and
``sessionscope.testing``."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Self

from .._async_compat import Turns, call_maybe_async, run_on_connection, running_loop
from .._frames import find_frame, owner_here
from .._isolation import TURN, Faults, Isolated, OnCommit, check_isolation_arguments
from .._sqlite import begin_connection
from ..errors import ConfigurationError, SessionScopeError
from .manager import AsyncSessionManager

__all__ = ["AsyncIsolation", "async_isolated"]


class AsyncIsolation:
    """While entered, the managers' scopes run in a transaction rolled back at the exit.

    ``on_commit_callbacks`` holds, in order, the ``on_commit`` callbacks of the
    scopes that committed, when ``on_commit="capture"``; ``run_on_commit()`` runs
    and forgets them.
    """

    def __init__(self, managers: tuple[AsyncSessionManager, ...], on_commit: OnCommit) -> None:
        check_isolation_arguments(managers, AsyncSessionManager, on_commit, "async_isolated")
        self._managers = managers
        self._capture = on_commit == "capture"
        self.on_commit_callbacks: list[Callable[[], object]] = []
        self._entered: list[AsyncSessionManager] = []
        self._faults = Faults()

    async def __aenter__(self) -> Self:
        if self._entered:
            raise SessionScopeError("an isolation is entered once; make another")
        try:
            for manager in self._managers:
                await self._isolate(manager)
        except BaseException:
            await self._release()
            raise
        return self

    async def _isolate(self, manager: AsyncSessionManager) -> None:
        if find_frame(manager, owner_here()) is not None:
            raise ConfigurationError(
                "an isolation of %s was entered inside a scope of it: the scopes in the "
                "isolation would join that scope's real transaction. Enter the isolation "
                "first (a fixture that opens a scope belongs inside it)" % manager.name
            )
        outer = manager._isolation
        if outer is None:
            connection = await manager.engine.connect()
            try:
                transaction = await connection.begin()
                await run_on_connection(connection, begin_connection)
            except BaseException:
                await connection.close()
                raise
            turns = Turns(manager._pool_timeout, TURN)
        else:
            # Nested: a savepoint of the enclosing isolation's transaction.
            connection = outer.connection
            transaction = await connection.begin_nested()
            turns = outer.turns
        capture = self.on_commit_callbacks if self._capture else None
        manager._isolation = Isolated(
            connection, transaction, outer, turns, capture, running_loop(), self._faults
        )
        self._entered.append(manager)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self._release()

    async def _release(self) -> None:
        """Roll back what the managers did, and give them back as they were."""
        while self._entered:
            manager = self._entered.pop()
            isolated = manager._isolation
            assert isolated is not None
            manager._isolation = isolated.outer
            try:
                if isolated.transaction.is_active:
                    await isolated.transaction.rollback()
            finally:
                if isolated.outer is None:
                    await isolated.connection.close()

    def inject(self, fault: str, times: int = 1) -> None:
        """Make the next ``times`` virtual COMMITs (a scope's, or the body's own
        ``session.commit()``) fail as the database fails them.

        ``"serialization_failure"`` (40001) and ``"deadlock"`` (40P01): the
        server's answer to COMMIT, so the transaction is rolled back and a
        decorated function with retries re-runs. On SQLite both are SQLITE_BUSY,
        from a real deadlock (of two connections to a database of the process's
        own, the error then raised from the isolation's COMMIT).
        ``"connection_lost"`` (08006, just before COMMIT is sent): rolled back,
        retried. ``"commit_outcome_unknown"`` (08006 while COMMIT is in flight):
        ``CommitOutcomeUnknownError``, re-run only for ``idempotent=True``; the
        work is rolled back, as if it had not landed. These two are PostgreSQL's
        only. The database raises each, so the driver's real error goes through
        the library's real classification.
        """
        self._faults.add(fault, times, {m.engine.dialect.name for m in self._managers})

    async def run_on_commit(self) -> None:
        """Run the captured ``on_commit`` callbacks, in order, and forget them."""
        callbacks, self.on_commit_callbacks[:] = list(self.on_commit_callbacks), []
        for callback in callbacks:
            await call_maybe_async(callback)


def async_isolated(*managers: AsyncSessionManager, on_commit: OnCommit = "run") -> AsyncIsolation:
    """Isolate a test's use of ``managers``: ``async with async_isolated(manager) as iso:``.

    Every scope of the managers (decorators, module-level functions on a default
    manager, FastAPI dependencies) then runs on one connection per manager, in
    a transaction rolled back at the exit: an outermost scope is a SAVEPOINT,
    its commit releases it, its rollback (or an exception) rolls back to it,
    the body's own ``session.commit()`` works, ``requires_new`` is a savepoint
    too (so not independent of its caller here), retries roll back to the
    savepoint and re-run. Data committed before is visible. Isolations nest.
    """
    return AsyncIsolation(managers, on_commit)
