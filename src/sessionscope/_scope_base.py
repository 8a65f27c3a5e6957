"""What a scope of either flavour is, and does without awaiting anything.

The flavour classes (``_async/scope.py`` and its generated twin) add the phases
that talk to the database: entering, ending early, exiting. Everything here is
shared: the scope's state, the hand-over to another context, the ownership
error, and the bookkeeping of a transaction that ended.
"""

from __future__ import annotations

import logging
from time import monotonic, perf_counter
from typing import Any

from ._call_site import call_site
from ._frames import ENDED, Frame, Level, innermost
from ._settings import deadline_exceeded
from ._transient import is_statement_timeout
from .errors import (
    CommitOutcomeUnknownError,
    DeadlineExceededError,
    SessionScopeError,
    TransactionOwnershipError,
)
from .monitor import RollbackCause

__all__ = ["Kind", "ScopeBase"]

# A statement timeout capped to the deadline fires on the server's clock, rounded
# up to the millisecond: it counts as the deadline's if it came this close to it.
_SERVER_CLOCK_SLACK = 0.05


class Kind:
    """How a scope takes part in its session's transaction. (Plain class attributes:
    looking up an Enum's member costs five times as much, on every scope.)"""

    OWN = "own"  # opened it (the outermost scope, or requires_new): ends it at its exit
    JOINED = "joined"  # runs in an enclosing scope's transaction, which ends it
    SAVEPOINT = "savepoint"  # owns a savepoint of an enclosing scope's transaction


class ScopeBase(Frame):
    """The state of a scope. What most scopes never change is a class attribute,
    set on the instance only when it does: every scope is a hot path, and a store
    costs more than a lookup that falls through to the class."""

    # The scope a session passed by the caller belongs to; None: look it up on entry.
    _joining: Frame | None = None
    _kind = Kind.OWN
    # The scope that used the session before this one, back in charge at our exit.
    _previous: Any = None
    _savepoint: Any = None  # the flavour's SessionTransaction, if Kind.SAVEPOINT
    _started = 0.0
    _turns: Any = None  # held while we use a pool's only connection
    # True while the scope gets its connection: an error then means that nothing
    # was done yet, whatever the driver says.
    connecting = False
    # Whether the body committed some of its work itself (session.commit()).
    _committed_in_body = False
    # When the call's deadline runs out (time.monotonic()), if it has one: a
    # decorated function's attempts share its call's. The async flavour's
    # client-side bound on the scope, while entered (an asyncio.Timeout).
    _deadline_at: float | None = None
    _guard: Any = None
    # The guard's TimeoutError, once it has stopped the scope.
    _stopped: BaseException | None = None
    # Whether COMMIT was in flight when the connection was lost or the scope stopped.
    _unknown = False
    # The replica this read-only scope runs on (_replicas.py), if it does.
    _replica: Any = None
    # Its connection's info, where the idle watch finds its last statement (_holders).
    _activity: Any = None

    def __init__(
        self,
        manager: Any,
        options: Any,
        parent: Frame | None = None,
        deadline_at: float | None = None,
    ) -> None:
        self.manager = manager
        self.session = None
        self._options = options
        if parent is not None:
            self._joining = parent
        if deadline_at is not None:
            self._deadline_at = deadline_at

    @property
    def opens_transaction(self) -> bool:
        """Whether this scope owns its transaction (the outermost, or requires_new)."""
        return self._kind is Kind.OWN

    @property
    def may_rerun(self) -> bool:
        """Whether the caller may re-run this scope's body after an error: only the
        owner of the transaction, and only if none of the work was committed yet
        (by the body's own ``session.commit()``), which a re-run would repeat."""
        return self._kind is Kind.OWN and not self._committed_in_body

    def make_current(self) -> None:
        """Hand this entered scope over to the calling context.

        For frameworks that enter a sync scope in one thread on behalf of code
        that runs in another (FastAPI's thread pool for ``def`` endpoints): the
        first task or thread that looks for a scope in this context takes it.
        Undo with ``release_current()``.
        """
        self._check_active("make_current()")
        self.owner = None
        innermost.set(self)

    def release_current(self) -> None:
        self._check_active("release_current()")
        innermost.set(self.parent)

    def _check_active(self, what: str) -> None:
        if self.session is None or self.owner is ENDED:
            raise SessionScopeError(f"{what} needs an entered scope that has not exited")

    def not_the_owner(self, how: str) -> TransactionOwnershipError:
        """The error for the body of a joined or nested scope ending the transaction."""
        owner = self  # the first scope that used the session: it opened the transaction
        while owner._previous is not None:
            owner = owner._previous
        if self._kind is Kind.SAVEPOINT:
            where = (
                "a nested scope, which owns a savepoint, not the transaction: it would end "
                f"the whole transaction opened at {owner.opened_at()}"
            )
            instead = "leave the scope to release the savepoint"
        else:
            where = (
                f"a scope that joined the transaction opened at {owner.opened_at()}: it "
                "would end that scope's work too"
            )
            instead = "let the owning scope commit at its exit"
        return TransactionOwnershipError(
            f"session.{how}() in {where}. Instead, {instead}, raise sessionscope.Rollback to "
            "roll back, or use propagation='requires_new' for a transaction of its own"
        )

    def _count_unknown(self, level: Level, error: BaseException) -> None:
        """COMMIT was in flight when the connection was lost: neither callbacks nor a
        rollback count, since nobody knows what happened."""
        self._unknown = True
        manager = self.manager
        if manager._monitoring:
            manager.monitor.commit_outcome_unknown(error, level.transaction_id)
        manager._log(
            logging.ERROR,
            "COMMIT outcome unknown, connection lost while it was in flight: %r",
            error,
            transaction_id=level.transaction_id,
        )

    def _past_deadline(self, error: BaseException) -> BaseException:
        """The error to raise for ``error`` leaving a scope with a deadline: the
        deadline's, if it is what stopped the scope (the client-side bound, or a
        statement timeout capped to it); else ``error`` itself."""
        deadline_at = self._deadline_at
        if deadline_at is None or isinstance(error, DeadlineExceededError):
            return error
        stopped_by_us = error is self._stopped and error is not None
        if not stopped_by_us and not (
            is_statement_timeout(error) and deadline_at - monotonic() <= _SERVER_CLOCK_SLACK
        ):
            return error
        if self._unknown:
            unknown = CommitOutcomeUnknownError(
                "the deadline ran out while COMMIT was in flight: the transaction may or "
                "may not have been committed"
            )
            unknown.__cause__ = error
            return unknown
        return deadline_exceeded("during the scope; it was rolled back", error)

    def _disarm(self) -> None:
        """The transaction has ended: the deadline no longer bounds the scope, whose
        callbacks run now (a bound firing in them would say a committed transaction
        was rolled back)."""
        guard = self._guard
        if guard is not None and not guard.expired():
            guard.reschedule(None)

    def _ended(
        self, level: Level, cause: RollbackCause | None, error: BaseException | None
    ) -> None:
        """Count a transaction that ended, and its session's closing (committed if
        ``cause`` is None); warn if it was slow."""
        manager = self.manager
        if not manager._monitoring:
            return
        # Read before anything else: what follows is not part of the transaction.
        duration = perf_counter() - self._started
        transaction_id = level.transaction_id
        manager._holders.pop(self, None)
        manager.monitor.closed(duration, transaction_id, cause, error)
        if duration >= manager._slow_transaction_seconds:
            self._warn_slow(duration, transaction_id)

    def _warn_slow(self, duration: float, transaction_id: int) -> None:
        manager = self.manager
        manager.monitor.slow_transaction(duration, transaction_id)
        manager._log(
            logging.WARNING,
            "slow transaction: %.3f s (slow_transaction_seconds=%s), scope opened at %s",
            duration,
            manager.config.slow_transaction_seconds,
            call_site(),
            transaction_id=transaction_id,
        )

    def _give_turn_back(self) -> None:
        """Let the next scope use the pool's only connection (once ours is back)."""
        turns = self._turns
        if turns is not None:
            self._turns = None
            turns.holder = None
            turns.give_back()
