# Generated from src/sessionscope/_async/scope.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""The scope of this flavour: one transactional scope, the heart of the library."""

from __future__ import annotations

import logging
from time import perf_counter
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import IllegalStateChangeError

from .._sync_compat import (
    IS_ASYNC,
    Session,
    SessionTransaction,
    close_if_idle,
    current_owner,
    has_pending_changes,
    run_callbacks,
    run_shielded,
    sleep,
)
from ..context import Frame, Level, find_frame, innermost
from ..errors import (
    CommitOutcomeUnknownError,
    NoActiveSessionError,
    TransactionRolledBackError,
)
from ..monitor import call_site
from ..options import ScopeOptions, check_joinable
from ..transient import commit_may_have_landed, transient_reason
from .retrying import wait_before_retry

if TYPE_CHECKING:
    from .manager import SessionManager

__all__ = ["SessionScope"]

_JOINED, _SAVEPOINT, _OWN = "joined", "savepoint", "own"


class SessionScope(Frame):
    """A transactional scope: ``[async] with manager.session_scope() as session:``.

    The outermost scope opens a session and a transaction. On a clean exit it
    commits (``auto_commit``) and then runs the ``on_commit`` callbacks; when an
    exception leaves it, it rolls back, runs the ``on_rollback`` callbacks and
    lets the exception go on. Either way it closes the session, shielded from
    cancellation, so the connection always returns to the pool.

    A scope opened while another scope of the same manager is active in the
    same task or thread follows its ``propagation``:

    - ``"required"`` (default) joins: same session, same transaction, no commit
      at its exit. An exception leaving a joined scope marks the transaction
      (or the savepoint it runs in) rollback-only: if some code swallows the
      exception, the scope owning that transaction or savepoint still rolls
      back at its exit and raises ``TransactionRolledBackError``.
    - ``"mandatory"`` joins too, but raises ``NoActiveSessionError`` when there
      is nothing to join.
    - ``"nested"`` opens a SAVEPOINT in the active transaction (a transaction
      of its own if there is none). An exception leaving it rolls back to the
      savepoint only; the enclosing transaction goes on. Callbacks registered
      in it are dropped with it, or handed to the enclosing level when it is
      released.
    - ``"requires_new"`` opens a separate session on its own connection and
      commits or rolls back on its own: it survives the caller's rollback.

    ``isolation_level`` and ``read_only`` can only be chosen where a
    transaction starts; asking a joined or nested scope for something its
    transaction does not have is a ``ConfigurationError``. A scope object is
    used once: call ``session_scope()`` again for another.
    """

    __slots__ = ("_joining", "_kind", "_options", "_savepoint", "_started", "connecting")

    manager: SessionManager  # narrower than Frame's, for the type checker

    def __init__(
        self,
        manager: SessionManager,
        options: ScopeOptions,
        parent: Frame | None = None,
    ) -> None:
        self.manager = manager
        self.session = None
        self._options = options
        # A frame the caller's session belongs to; None means: look it up on entry.
        self._joining = parent
        self._kind = _OWN
        self._savepoint: SessionTransaction | None = None
        self._started = 0.0
        # True while the scope gets its connection: an error then means that
        # nothing was done yet, whatever the driver says.
        self.connecting = False

    @property
    def opens_transaction(self) -> bool:
        """Whether this scope owns its transaction (the outermost, or requires_new):
        only such a scope's caller may re-run the work."""
        return self._kind is _OWN

    def make_current(self) -> None:
        """Make this entered scope the innermost one of the calling context.

        For frameworks that must enter a sync scope in a worker thread (whose
        copy of the context is thrown away) on behalf of a request handled in
        another context: FastAPI's thread pool. Undo with ``release_current()``.
        """
        assert self.session is not None, "make_current() needs an entered scope"
        innermost.set(self)

    def release_current(self) -> None:
        assert self.session is not None, "release_current() needs an entered scope"
        innermost.set(self.parent)

    def __enter__(self) -> Session:
        if self.session is not None:
            raise RuntimeError("a scope object is entered once; call session_scope() for another")
        manager = self.manager
        options = self._options
        owner = current_owner()
        parent = self._joining
        enclosing = innermost.get()
        if parent is None and enclosing is not None:
            parent = find_frame(manager, owner)
        if parent is not None and options.propagation != "requires_new":
            session = self._join(parent)
        elif options.propagation == "mandatory":
            raise NoActiveSessionError(
                "propagation='mandatory' needs an active scope of %s in this task or thread"
                % manager.name
            )
        else:
            # A new session with its connection, acquired now, so that a refused
            # connection can be retried before the body runs (a body never can
            # be). Inline rather than a method of its own: every transaction starts here.
            attempt = 0
            while True:
                session = manager.sessionmaker()
                transaction_id = next(manager.transaction_ids)
                if manager.logs_debug:
                    manager.log(logging.DEBUG, "session opened", transaction_id=transaction_id)
                if manager.monitoring:
                    self._started = perf_counter()
                try:
                    self.connecting = True
                    session.connection(execution_options=options.execution_options)
                    self.connecting = False
                    if manager.monitoring:
                        wait = perf_counter() - self._started
                        if manager.monitor.listening:
                            manager.monitor.connected(wait, transaction_id)
                        else:
                            manager.monitor.note_connected(wait)
                    if options.read_only:
                        session.execute(text(manager.read_only_on))
                except Exception as error:
                    self._discard(session, transaction_id)
                    reason = transient_reason(error, connecting=True)
                    if reason != "connection" or attempt >= options.connect_retries:
                        raise
                    attempt += 1
                    wait_before_retry(manager, attempt, reason, error, manager.connect_retry)
                    continue
                except BaseException:
                    self._discard(session, transaction_id)
                    raise
                break
            self.level = Level(
                None, IS_ASYNC, options.read_only, options.isolation_level, transaction_id
            )
        self.session = session
        self.parent = enclosing
        self.owner = owner
        innermost.set(self)
        return session

    def _join(self, parent: Frame) -> Session:
        """Enter the transaction of ``parent``'s scope: joined, or in a savepoint of it."""
        options = self._options
        check_joinable(parent.level.isolation_level, parent.level.read_only, options)
        level = parent.level
        if options.propagation == "nested":
            self._kind = _SAVEPOINT
            self._savepoint = parent.session.begin_nested()
            level = Level(
                level,
                IS_ASYNC,
                level.read_only,
                level.isolation_level,
                level.transaction_id,
            )
            if self.manager.monitoring:
                self.manager.monitor.savepoint("opened", level.transaction_id)
        else:
            self._kind = _JOINED
        self.level = level
        session: Session = parent.session
        return session

    def _discard(self, session: Session, transaction_id: int) -> None:
        """Close a session whose scope never began (no connection, or no read-only)."""
        monitor = self.manager.monitor
        if self.manager.monitoring:
            if self.connecting:  # connected() has not counted it yet
                monitor.session_opened(transaction_id)
            monitor.session_closed(transaction_id)
        run_shielded(self._close, session, transaction_id)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        session = self.session
        assert session is not None, "__aexit__ without __aenter__"
        innermost.set(self.parent)
        level = self.level
        if self._kind is _JOINED:
            if exc is not None:
                level.mark_rollback_only(exc)
        elif self._kind is _SAVEPOINT:
            self._exit_savepoint(level, exc)
        elif exc is not None:
            self._rolled_back(session, level, "exception", exc)
        elif level.rollback_only:
            cause = level.rollback_cause
            self._rolled_back(session, level, "rollback_only", cause)
            raise TransactionRolledBackError(
                "the transaction was rolled back because an exception left a joined scope"
                " (%r) and was swallowed" % (cause,)
            ) from cause
        elif self._options.auto_commit or not session.in_transaction():
            self._commit(session, level)
        else:
            # auto_commit=False and the body left work uncommitted: discard it.
            self._rolled_back(session, level, "not_committed", None)

    def _exit_savepoint(self, level: Level, exc: BaseException | None) -> None:
        savepoint = self._savepoint
        assert savepoint is not None and level.parent is not None
        manager = self.manager
        if exc is None and not level.rollback_only:
            try:
                savepoint.commit()
            except BaseException as release_error:
                self._rollback_savepoint(savepoint, level, release_error)
                raise
            level.hand_up()
            if manager.monitoring:
                manager.monitor.savepoint("released", level.transaction_id)
            return
        cause = exc if exc is not None else level.rollback_cause
        self._rollback_savepoint(savepoint, level, cause)
        if exc is None:
            raise TransactionRolledBackError(
                "the savepoint was rolled back because an exception left a scope joined to it"
                " (%r) and was swallowed" % (cause,)
            ) from cause

    def _rollback_savepoint(
        self, savepoint: SessionTransaction, level: Level, cause: BaseException | None
    ) -> None:
        manager = self.manager
        transaction_id = level.transaction_id
        try:
            run_shielded(savepoint.rollback)
        except BaseException as rollback_error:
            # The savepoint's work may still be in the transaction: it must not commit.
            assert level.parent is not None
            level.parent.mark_rollback_only(rollback_error)
            if not isinstance(rollback_error, Exception):
                raise
            manager.log(
                logging.ERROR,
                "rollback to savepoint failed: %r",
                rollback_error,
                transaction_id=transaction_id,
            )
        if manager.monitoring:
            manager.monitor.savepoint("rolled_back", transaction_id)
        manager.log(
            logging.DEBUG, "rolled back to savepoint: %r", cause, transaction_id=transaction_id
        )
        if level.on_rollback:
            run_callbacks(level.on_rollback, manager.log)

    def _commit(self, session: Session, level: Level) -> None:
        """Flush, COMMIT, close, then the on_commit callbacks; an error is handled here,
        and raised."""
        manager = self.manager
        try:
            if self._options.read_only and manager.read_only_off is not None:
                session.execute(text(manager.read_only_off))
            # Flushing first turns a flush error into an ordinary error before
            # COMMIT: only what fails after this line can leave the outcome unknown.
            # (Checked first: an empty flush still costs a trip through greenlet.)
            if has_pending_changes(session):
                session.flush()
        except BaseException as error:
            self._rolled_back(session, level, "commit_failed", error)
            raise
        try:
            session.commit()
        except BaseException as error:
            if not commit_may_have_landed(error):
                # The server answered (a serialization failure, a deferred
                # constraint): the transaction is definitely rolled back.
                self._rolled_back(session, level, "commit_failed", error)
                raise
            self._outcome_unknown(session, level, error)
            if isinstance(error, Exception):
                raise CommitOutcomeUnknownError(
                    "the connection was lost while COMMIT was in flight: the transaction "
                    "may or may not have been committed (%r)" % (error,)
                ) from error
            raise  # a cancellation reaches the caller unchanged
        if manager.logs_debug:
            manager.log(logging.DEBUG, "committed", transaction_id=level.transaction_id)
        try:
            if not close_if_idle(session):
                run_shielded(self._close, session, level.transaction_id)
            elif manager.logs_debug:
                manager.log(logging.DEBUG, "session closed", transaction_id=level.transaction_id)
        finally:
            if manager.monitoring:  # _ended() inlined: this is every transaction's path
                duration = perf_counter() - self._started
                manager.monitor.closed(duration, level.transaction_id)
                if duration >= manager.slow_transaction_seconds:
                    self._warn_slow(duration, level.transaction_id)
        if level.on_commit:
            run_callbacks(level.on_commit, manager.log)

    def _outcome_unknown(self, session: Session, level: Level, error: BaseException) -> None:
        """The connection was lost during COMMIT: neither callbacks nor a rollback
        count, since nobody knows what happened; the session is closed."""
        manager = self.manager
        if manager.monitoring:
            manager.monitor.commit_outcome_unknown(error, level.transaction_id)
            manager.monitor.session_closed(level.transaction_id)
        manager.log(
            logging.ERROR,
            "COMMIT outcome unknown, connection lost while it was in flight: %r",
            error,
            transaction_id=level.transaction_id,
        )
        run_shielded(self._close, session, level.transaction_id)

    def _rolled_back(
        self, session: Session, level: Level, cause: str, error: BaseException | None
    ) -> None:
        """Roll back and close (shielded), then run the on_rollback callbacks."""
        manager = self.manager
        manager.log(
            logging.INFO,
            "rolling back (%s): %r",
            cause,
            error,
            transaction_id=level.transaction_id,
        )
        try:
            run_shielded(self._close, session, level.transaction_id, True)
        finally:
            self._ended(level, cause, error)
        if level.on_rollback:
            run_callbacks(level.on_rollback, manager.log)

    def _ended(self, level: Level, cause: str | None, error: BaseException | None) -> None:
        """Count a transaction that ended, and its session's closing (committed if
        ``cause`` is None); warn if it was slow."""
        manager = self.manager
        if not manager.monitoring:
            return
        # Read before anything else: what follows is not part of the transaction.
        duration = perf_counter() - self._started
        transaction_id = level.transaction_id
        manager.monitor.closed(duration, transaction_id, cause, error)
        if duration >= manager.slow_transaction_seconds:
            self._warn_slow(duration, transaction_id)

    def _warn_slow(self, duration: float, transaction_id: int) -> None:
        manager = self.manager
        manager.monitor.slow_transaction(duration, transaction_id)
        manager.log(
            logging.WARNING,
            "slow transaction: %.3f s (slow_transaction_seconds=%s), scope opened at %s",
            duration,
            manager.config.slow_transaction_seconds,
            call_site(),
            transaction_id=transaction_id,
        )

    def _close(self, session: Session, transaction_id: int, rollback: bool = False) -> None:
        """Return the connection to the pool whatever happens; never raises an Exception."""
        manager = self.manager
        try:
            if rollback:
                try:
                    # Explicitly, not left to close(): SQLite keeps its transaction
                    # open when it refuses a COMMIT (a deferred constraint, BUSY), and
                    # SQLAlchemy would hand the connection back to the pool in it.
                    session.rollback()
                    if self._options.read_only and manager.read_only_off is not None:
                        session.execute(text(manager.read_only_off))  # per connection
                except IllegalStateChangeError:
                    pass  # another task is inside the session: close once it has left
                except Exception:
                    session.invalidate()  # a connection we cannot reset must not return
            _close_when_idle(session)
        except Exception as close_error:
            manager.log(
                logging.ERROR,
                "closing the session failed: %r",
                close_error,
                transaction_id=transaction_id,
            )
            try:
                session.invalidate()
            except Exception:
                pass
        finally:
            if manager.logs_debug:
                manager.log(logging.DEBUG, "session closed", transaction_id=transaction_id)


def _close_when_idle(session: Session) -> None:
    """Close the session, waiting (boundedly) for another task or thread to leave it.

    Code that shares a session with a task of its own (``asyncio.gather`` does
    not cancel the others when one fails) can still be inside it when the scope
    ends; SQLAlchemy then refuses to close it mid-operation, and the connection
    would stay checked out.
    """
    delay = 0.001
    for _ in range(_CLOSE_ATTEMPTS):
        try:
            session.close()
            return
        except IllegalStateChangeError:
            sleep(delay)
            delay = min(delay * 2, 0.25)
    session.close()


_CLOSE_ATTEMPTS = 30  # about five seconds in all
