"""The scope of this flavour: one transactional scope, the heart of the library."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from time import monotonic, perf_counter
from types import TracebackType
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.exc import IllegalStateChangeError

from .._async_compat import (
    IS_ASYNC,
    AsyncSession,
    AsyncSessionTransaction,
    Outcome,
    Turns,
    close_if_idle,
    current_owner,
    deadline_guard,
    has_pending_changes,
    run_callbacks,
    run_shielded,
    running_loop,
    sleep,
    sync_engine_of,
    take_connection,
)
from .._fast_read import WritesNotRefused
from .._frames import ENDED, FORKED, Frame, Level, find_frame, innermost
from .._holders import acquired
from .._isolation import raise_sqlite_busy, server_raise
from .._options import check_joinable
from .._pooler import refused_startup_parameter
from .._replicas import Replica, check_token
from .._scope_base import Kind, ScopeBase
from .._settings import deadline_exceeded
from .._transient import commit_may_have_landed, is_connection_error, transient_reason
from ..errors import (
    CommitOutcomeUnknownError,
    ConfigurationError,
    NoActiveSessionError,
    Rollback,
    SessionScopeError,
    TransactionRolledBackError,
)
from ..monitor import RollbackCause
from .retrying import wait_before_retry
from .routing import ask_replica
from .session import AsyncScopedSession

if TYPE_CHECKING:
    from .manager import AsyncSessionManager

__all__ = ["AsyncSessionScope"]

# How long after the deadline the async flavour's client-side bound cancels a scope.
_CLIENT_GRACE = 0.1


class AsyncSessionScope(ScopeBase):
    """A transactional scope: ``[async] with manager.session_scope() as session:``.

    The outermost scope opens a session and a transaction. On a clean exit it
    commits (``auto_commit``) and then runs the ``on_commit`` callbacks; when an
    exception leaves it, it rolls back, runs the ``on_rollback`` callbacks and
    lets the exception go on (``sessionscope.Rollback`` excepted: it is
    swallowed). Either way it closes the session (in the async flavour, shielded
    from cancellation), so the connection always returns to the pool.

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
      (Not on a pool with a single connection, such as in-memory SQLite's:
      there it is a ``ConfigurationError``.)

    What the body may do to its session: the scope that owns the transaction
    (the outermost, or ``requires_new``) may call ``session.commit()``,
    ``rollback()`` or ``close()`` (which ends the transaction like a
    rollback); the scope then goes on with a new transaction with the same
    options, and the callbacks registered so far follow the outcome. In a
    joined or nested scope these calls raise ``TransactionOwnershipError``:
    they would end an enclosing scope's work. ``raise sessionscope.Rollback``
    rolls back quietly: the owner of the transaction (or the nested scope's
    savepoint) rolls back and swallows it.

    Only the task or thread that entered a scope joins it, and only while it
    is active: code started inside it in a copy of its context (a task, a
    thread) opens its own. ``isolation_level`` and ``read_only`` can only be
    chosen where a transaction starts; asking a joined or nested scope for
    something its transaction does not have is a ``ConfigurationError``. A
    scope object is used once: call ``session_scope()`` again for another.
    """

    manager: AsyncSessionManager  # narrower than the base's, for the type checker
    _previous: AsyncSessionScope | None
    _savepoint: AsyncSessionTransaction | None
    _turns: Turns | None

    async def __aenter__(self) -> AsyncSession:
        if self.session is not None:
            raise SessionScopeError(
                "a scope object is entered once; call session_scope() for another"
            )
        manager = self.manager
        propagation = self._options.propagation
        owner = current_owner()
        parent = self._joining
        enclosing = innermost.get()
        if parent is None and enclosing is not None:
            parent = find_frame(manager, owner)
        if parent is not None and propagation != "requires_new":
            session = await self._join(parent)
        elif propagation == "mandatory":
            raise NoActiveSessionError(
                "propagation='mandatory' needs an active scope of %s in this task or thread"
                % manager.name
            )
        else:
            if parent is not None and manager._turns is not None and manager._isolation is None:
                raise ConfigurationError(
                    "propagation='requires_new' needs a connection of its own, and every "
                    "session of %s gets the same one (an in-memory SQLite database): use a "
                    "database file, or another propagation" % manager.name
                )
            # On a shared connection (in-memory SQLite, a test's isolation) a scope
            # opened where this task or thread already has the turn (requires_new in
            # an isolation, an on_commit callback of the body's own commit) uses it.
            turns = manager._turns if manager._isolation is None else manager._isolation.turns
            take_turn = parent is None and (turns is None or turns.holder != owner)
            if parent is not None and self._deadline_at is None:
                # requires_new: its own transaction, within its caller's time
                self._deadline_at = parent.level.deadline_at
            if self._options.deadline is not None or self._deadline_at is not None:
                await self._start_deadline()
                try:
                    session = await self._open(take_turn)
                except BaseException as error:
                    leaving = await self._leave_guard(error)
                    assert leaving is not None
                    raise self._past_deadline(leaving)  # noqa: B904 (its cause is set)
            else:
                session = await self._open(take_turn)
            if self._turns is not None:
                self._turns.holder = owner
        self.session = session
        self.parent = enclosing
        self.owner = owner
        innermost.set(self)
        return session

    async def _start_deadline(self) -> None:
        """The call's deadline: none of it left, no scope; else, in the async flavour,
        the scope bounded on the client side too, its exit included."""
        deadline = self._options.deadline
        if deadline is not None:
            own = monotonic() + deadline
            if self._deadline_at is None or own < self._deadline_at:
                self._deadline_at = own
        assert self._deadline_at is not None
        left = self._deadline_at - monotonic()
        if left <= 0:
            raise deadline_exceeded("before the scope began")
        # A little after the deadline: a statement running then is stopped by the
        # server's capped timeout, which leaves the connection usable.
        guard = deadline_guard(left + _CLIENT_GRACE)
        if guard is not None:
            await guard.__aenter__()
            self._guard = guard

    async def _leave_guard(self, error: BaseException | None) -> BaseException | None:
        """Leave the client-side bound: the error leaving the scope, or the bound's
        TimeoutError if it is what cancelled the scope."""
        guard = self._guard
        if guard is None:
            return error
        self._guard = None
        try:
            if error is None:
                await guard.__aexit__(None, None, None)
            else:
                await guard.__aexit__(type(error), error, error.__traceback__)
        except TimeoutError as timeout:
            self._stopped = timeout
            return timeout
        return error

    async def _open(self, take_turn: bool = True) -> AsyncScopedSession:
        """A new session with its connection and transaction, owned by this scope. A
        refused connection is retried per the options (a body never can be: this
        happens before it runs)."""
        manager = self.manager
        if (
            manager._replicas is not None
            and self._options.read_only
            and manager._isolation is None
            and self._options.isolation_level != "SERIALIZABLE"  # a hot standby refuses it
        ):
            on_replica = await self._open_on_replica()
            if on_replica is not None:
                return on_replica
        attempt = 0
        while True:
            session = self._new_session()
            try:
                await self._connect(session, take_turn)
                return session
            except Exception as error:
                if self.level.fast and (
                    refused_startup_parameter(error) or isinstance(error, WritesNotRefused)
                ):
                    manager._no_fast_primary(error)
                    continue
                reason = transient_reason(error, connecting=True)
                if reason != "connection" or attempt >= self._options.connect_retries:
                    raise
                attempt += 1
                await wait_before_retry(
                    manager, attempt, reason, error, manager._connect_retry, self._deadline_at
                )

    async def _open_on_replica(self) -> AsyncScopedSession | None:
        """A read-only scope's session on a fit replica (``_replicas.py``); None when
        there is none, and the primary takes the scope."""
        replicas = self.manager._replicas
        assert replicas is not None
        token = self._options.after
        if callable(token):
            token = check_token(token())
        now = monotonic()
        wait_until = now + replicas.wait
        if self._deadline_at is not None:
            # Half of what is left at most: the primary must still have time for it.
            wait_until = min(wait_until, now + (self._deadline_at - now) / 2)
        for replica in replicas.candidates(now):
            session = await self._try_replica(replica, token, wait_until)
            if session is not None:
                replicas.routed(replica)
                self._replica = replica
                return session
        replicas.fell_back()
        return None

    async def _try_replica(
        self, replica: Replica, token: int | None, wait_until: float
    ) -> AsyncScopedSession | None:
        """The scope's session on ``replica``, or None: it is not fit, or it is down
        (then skipped for its cool-down)."""
        replicas = self.manager._replicas
        assert replicas is not None
        # Idle pooled connections may have broken (the replica restarted): then a
        # failure is theirs, and SQLAlchemy empties the pool; a new one decides.
        pooled = getattr(sync_engine_of(replica.engine).pool, "checkedin", lambda: 0)()
        for attempt in (1, 2):
            try:
                if replicas.needs_check(replica, token, monotonic()):
                    if not await ask_replica(replicas, replica, token, wait_until):
                        return None
                elif not replicas.fit(replica):  # another scope has just learned so
                    return None
                session = self._new_session(replica)
                await self._connect(session, False)
                return session
            except Exception as error:
                if attempt == 1 and pooled and getattr(error, "connection_invalidated", False):
                    continue
                # A replica that does not answer in time (asyncpg's connect timeout)
                # is as down as one that refuses.
                if transient_reason(error, connecting=True) != "connection" and not isinstance(
                    error, TimeoutError
                ):
                    raise
                replicas.went_down(replica, monotonic())
                self.manager._log(
                    logging.WARNING,
                    "replica %s skipped for %.3g s: %s",
                    replica.name,
                    replicas.cool_down,
                    (str(error).splitlines() or [type(error).__name__])[0],
                )
                return None
        return None

    def _replica_lost(self, error: BaseException) -> None:
        """A replica that lost the scope's connection is skipped for its cool-down:
        a decorated function's re-run goes to another."""
        if self._replica is not None and is_connection_error(error):
            replicas = self.manager._replicas
            assert replicas is not None
            replicas.went_down(self._replica, monotonic())
            self._replica = None  # once, though the error may pass here twice

    def _new_session(self, replica: Replica | None = None) -> AsyncScopedSession:
        """A session of this scope, and the level of its transaction (not begun yet)."""
        manager = self.manager
        options = self._options
        session: AsyncScopedSession
        isolation = manager._isolation
        fast = False
        if replica is not None:
            bind, fast = replica.bind_for(options.isolation_level, options.fast_read)
            session = manager.sessionmaker(bind=bind)
        elif options.fast_read and isolation is None and (bind := manager._fast_primary()):
            session = manager.sessionmaker(bind=bind)
            fast = True
        elif isolation is not None:
            if options.isolation_level is not None:
                raise ConfigurationError(
                    "isolation_level is not available inside a test's isolation "
                    "(sessionscope.testing): its scopes are savepoints of one transaction, "
                    "whose level a savepoint cannot change"
                )
            session = isolation.session(manager, running_loop())
        elif options.isolation_level is None:
            session = manager.sessionmaker()
        else:
            session = manager._isolated_session(options.isolation_level)
        transaction_id = next(manager._transaction_ids)
        self.level = Level(
            None,
            is_async=IS_ASYNC,
            read_only=options.read_only,
            isolation_level=options.isolation_level,
            transaction_id=transaction_id,
            setup=options.setup,
            deadline_at=self._deadline_at,
            fast=fast,
        )
        # Before the connection: its transaction begins with this scope's options.
        session._sessionscope_scope = self
        if manager._logs_debug:
            manager._log(logging.DEBUG, "session opened", transaction_id=transaction_id)
        return session

    async def _connect(self, session: AsyncScopedSession, take_turn: bool) -> None:
        """Take the turn (on a pool of one connection), then the connection; a session
        that did not get it is closed before the error goes on."""
        manager = self.manager
        if manager._monitoring:
            self._started = perf_counter()
        try:
            isolation = manager._isolation
            turns = manager._turns if isolation is None else isolation.turns
            if turns is not None and take_turn:  # given back when the session is closed
                if not await turns.take():
                    raise turns.timed_out()
                self._turns = turns
            self.connecting = True
            watchdog = manager._watchdog
            if watchdog is not None:  # it warns of a long wait (_holders.py)
                if not watchdog.running:
                    watchdog.start()
                manager._waiting[self] = None
            try:
                connection = await take_connection(session)
            finally:
                if watchdog is not None:
                    del manager._waiting[self]
            self.connecting = False
        except BaseException as error:
            await self._discard(session, error)
            raise
        if manager._monitoring:
            manager.monitor.connected(
                perf_counter() - self._started, self.level, self._options.propagation
            )
            manager._holders[self] = None
            if manager._watching_idle:
                self._activity = connection.info
                acquired(connection.info)

    async def _join(self, parent: Frame) -> AsyncSession:
        """Enter the transaction of ``parent``'s scope: joined, or in a savepoint of it."""
        options = self._options
        check_joinable(
            parent.level.isolation_level, parent.level.read_only, parent.level.setup, options
        )
        session: AsyncScopedSession = parent.session
        level = parent.level
        if options.propagation == "nested":
            self._kind = Kind.SAVEPOINT
            if not level.fast:  # the fast path has no transaction to savepoint
                self._savepoint = await session.begin_nested()
            level = Level(
                level,
                is_async=IS_ASYNC,
                read_only=level.read_only,
                isolation_level=level.isolation_level,
                transaction_id=level.transaction_id,
                setup=level.setup,
                deadline_at=level.deadline_at,
                fast=level.fast,
            )
            if self.manager._monitoring:
                self.manager.monitor.savepoint("opened", level.transaction_id)
        else:
            self._kind = Kind.JOINED
        self.level = level
        self._previous = session._sessionscope_scope
        session._sessionscope_scope = self
        return session

    async def _discard(self, session: AsyncScopedSession, error: BaseException) -> None:
        """Close a session that never got its connection (nor was counted as opened)."""
        session._sessionscope_scope = None
        manager = self.manager
        if manager._monitoring:
            manager.monitor.connect_failed(error, self.level.transaction_id)
        await run_shielded(self._close, session, self.level.transaction_id)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        # True swallows a ``Rollback``; ``bool | None`` rather than ``bool`` tells type
        # checkers that code after a ``with`` block ending in ``return`` is unreachable.
        if self._deadline_at is None or self._kind is not Kind.OWN:
            return await self._exit(exc)
        try:
            swallowed = await self._exit(exc)
        except BaseException as error:
            leaving = await self._leave_guard(error)
            assert leaving is not None
            raise self._past_deadline(leaving)  # noqa: B904 (its cause is set)
        leaving = await self._leave_guard(None if swallowed else exc)
        if leaving is not None:
            replaced = self._past_deadline(leaving)
            if replaced is not exc:
                raise replaced
        return swallowed

    async def _exit(self, exc: BaseException | None) -> bool:
        """End the scope: commit, roll back, or leave it to the enclosing one."""
        session = self.session
        if session is None:
            raise SessionScopeError("a scope exited that was never entered")
        # Not a token's reset: a token works only in the context it was made in, and
        # a scope may be left in another (FastAPI runs the halves of a sync dependency
        # in separate worker threads, each in a copy of the request's context).
        innermost.set(self.parent)
        forked = self.owner is FORKED
        self.owner = ENDED
        # From here on, commit() and the like are the scope's, or the enclosing scope's.
        session._sessionscope_scope = self._previous
        try:
            if forked:
                return self._exit_in_forked_child(exc)
            if self._kind is Kind.JOINED:
                if exc is not None:
                    self.level.mark_rollback_only(exc)
                return False
            if self._kind is Kind.SAVEPOINT:
                return await self._exit_savepoint(exc)
            # The owner: commit, or roll back.
            level = self.level
            if exc is not None:
                if isinstance(exc, Rollback):
                    await self._rolled_back(session, level, "requested", None)
                    return True
                self._replica_lost(exc)
                await self._rolled_back(session, level, "exception", exc)
            elif level.rollback_only:
                cause = level.rollback_cause
                await self._rolled_back(session, level, "rollback_only", cause)
                raise TransactionRolledBackError(
                    "the transaction was rolled back: a scope joined to it failed (%r), "
                    "and the error did not reach this scope" % (cause,)
                ) from cause
            elif self._options.auto_commit or not session.in_transaction():
                await self._commit(session, level)
            else:
                # auto_commit=False and the body left work uncommitted: discard it.
                await self._rolled_back(session, level, "not_committed", None)
            return False
        finally:
            if self._turns is not None:  # an error left the scope holding the turn
                self._give_turn_back()

    def _exit_in_forked_child(self, exc: BaseException | None) -> bool:
        """This process was forked inside the scope: its connection is the parent's,
        so the child neither commits nor rolls back (it was detached at the fork)."""
        if exc is None:
            raise SessionScopeError(
                "this scope was opened before os.fork(), in the parent process: the child "
                "cannot end its transaction, and nothing it did in the scope was committed"
            )
        return False

    async def end_in_body(self, end: Callable[[], Outcome[None]], how: str) -> None:
        """The body called ``session.<how>()`` (``commit``, ``rollback`` or ``close``),
        and ``end`` is SQLAlchemy's own method for it.

        Allowed for the scope that owns the transaction only. The next statement
        begins a new transaction, with this scope's options (see ``_begin.py``);
        the callbacks registered so far follow the outcome, as they would at the
        scope's exit.
        """
        if self._kind is not Kind.OWN:
            raise self.not_the_owner(how)
        session = self.session
        level = self.level
        if self.manager._isolation is not None:
            self.manager._isolation.check_order(session, "session.%s() on" % how)
        committed = how == "commit"
        if committed and level.rollback_only:
            cause = level.rollback_cause
            await self._end_early(session.rollback, level, committed=False)
            raise TransactionRolledBackError(
                "session.commit() rolled back instead: a scope joined to the transaction"
                " failed (%r), and the error did not reach this scope" % (cause,)
            ) from cause
        isolated = committed and self.manager._isolation is not None
        if isolated:
            end = functools.partial(self._end_isolated, session, level)
        if committed and (isolated or has_pending_changes(session)):
            # Flushed first, as at the scope's exit: only what fails after this
            # line can leave the outcome unknown.
            try:
                await session.flush()
                if isolated:
                    await self._inject(session, in_flight=False)
            except BaseException:
                await self._run_callbacks(level.take_callbacks(committed=False))
                raise
        await self._end_early(end, level, committed)

    async def _end_early(
        self, end: Callable[[], Outcome[None]], level: Level, committed: bool
    ) -> None:
        # With the scope out of the way, so that ``end`` is SQLAlchemy's own method.
        session = self.session
        session._sessionscope_scope = None
        try:
            await end()
        except BaseException as error:
            self._replica_lost(error)
            # A read-only transaction wrote nothing: its outcome is never in doubt.
            if committed and commit_may_have_landed(error) and not level.read_only:
                self._committed_in_body = True  # maybe: a re-run could repeat it
                level.take_callbacks(committed)  # nobody knows: neither kind runs
                self._count_unknown(level, error)
                if isinstance(error, Exception):
                    raise _outcome_unknown(error) from error
                raise
            await self._run_callbacks(level.take_callbacks(committed=False))
            raise
        finally:
            session._sessionscope_scope = self
        if committed:
            # Nothing a re-run could repeat, if it wrote nothing.
            self._committed_in_body = not level.read_only
            await self._run_on_commit(level.take_callbacks(committed))
        else:
            await self._run_callbacks(level.take_callbacks(committed))

    async def _run_on_commit(self, callbacks: list[Callable[[], object]] | None) -> None:
        """The on_commit callbacks of a committed transaction: run, or kept for the test
        by an isolation that captures them."""
        isolation = self.manager._isolation
        if callbacks and isolation is not None and isolation.capture is not None:
            isolation.capture.extend(callbacks)
        else:
            await self._run_callbacks(callbacks)

    async def _run_callbacks(self, callbacks: list[Callable[[], object]] | None) -> None:
        if callbacks:
            # Outside this scope, also when the body's own commit runs them: a scope
            # a callback opens has a transaction of its own, as at the scope's exit.
            outside = innermost.set(self.parent)
            try:
                await run_callbacks(callbacks, self.manager._log)
            finally:
                innermost.reset(outside)

    async def _exit_savepoint(self, exc: BaseException | None) -> bool:
        savepoint = self._savepoint
        level = self.level
        assert level.parent is not None
        manager = self.manager
        if exc is None and not level.rollback_only:
            if savepoint is not None:
                try:
                    await savepoint.commit()
                except BaseException as release_error:
                    await self._rollback_savepoint(savepoint, level, release_error)
                    raise
            level.hand_up()
            if manager._monitoring:
                manager.monitor.savepoint("released", level.transaction_id)
            return False
        cause = exc if exc is not None else level.rollback_cause
        await self._rollback_savepoint(savepoint, level, cause)
        if exc is None:
            raise TransactionRolledBackError(
                "the savepoint was rolled back: a scope joined to it failed (%r), and the"
                " error did not reach this scope" % (cause,)
            ) from cause
        return isinstance(exc, Rollback)

    async def _rollback_savepoint(
        self, savepoint: AsyncSessionTransaction | None, level: Level, cause: BaseException | None
    ) -> None:
        manager = self.manager
        transaction_id = level.transaction_id
        try:
            if savepoint is not None:  # None: the fast path's, with nothing to undo
                await run_shielded(savepoint.rollback)
        except BaseException as rollback_error:
            # The savepoint's work may still be in the transaction: it must not commit.
            assert level.parent is not None
            level.parent.mark_rollback_only(rollback_error)
            if not isinstance(rollback_error, Exception):
                raise
            manager._log(
                logging.ERROR,
                "rollback to savepoint failed: %r",
                rollback_error,
                transaction_id=transaction_id,
            )
        if manager._monitoring:
            manager.monitor.savepoint("rolled_back", transaction_id)
        manager._log(
            logging.DEBUG, "rolled back to savepoint: %r", cause, transaction_id=transaction_id
        )
        await self._run_callbacks(level.on_rollback)

    async def _commit(self, session: AsyncScopedSession, level: Level) -> None:
        """Flush, COMMIT, close, then the on_commit callbacks; an error is handled here,
        and raised."""
        manager = self.manager
        isolation = manager._isolation
        try:
            # Flushing first turns a flush error into an ordinary error before
            # COMMIT: only what fails after this line can leave the outcome unknown.
            # (Checked first: an empty flush still costs a trip through greenlet.)
            if has_pending_changes(session):
                await session.flush()
            if isolation is not None:
                await self._inject(session, in_flight=False)
        except BaseException as error:
            await self._rolled_back(session, level, "commit_failed", error)
            raise
        try:
            if isolation is None:
                # SQLAlchemy's own commit(), not the body's (see session.py): no check to make.
                await session._sessionscope_unscoped.commit(session)
            else:
                await self._end_isolated(session, level)
        except BaseException as error:
            if level.read_only or not commit_may_have_landed(error):
                # The server answered (a serialization failure, a deferred
                # constraint): the transaction is definitely rolled back. (A
                # read-only one wrote nothing: its outcome is never in doubt.)
                self._replica_lost(error)
                await self._rolled_back(session, level, "commit_failed", error)
                raise
            self._count_unknown(level, error)
            if manager._monitoring:
                manager._holders.pop(self, None)
                manager.monitor.session_closed(level.transaction_id)
            # In a test's isolation the connection lives on: its savepoint goes back.
            close = self._close if isolation is None else self._roll_back_and_close
            await run_shielded(close, session, level.transaction_id)
            if isinstance(error, Exception):
                raise _outcome_unknown(error) from error
            raise  # a BaseException (cancellation, KeyboardInterrupt) goes on unchanged
        if manager._logs_debug:
            manager._log(logging.DEBUG, "committed", transaction_id=level.transaction_id)
        try:
            if not close_if_idle(session):
                await run_shielded(self._close, session, level.transaction_id)
            elif manager._logs_debug:
                manager._log(logging.DEBUG, "session closed", transaction_id=level.transaction_id)
        finally:
            # (Each checked here first: a call costs more than the check, on every scope.)
            if self._turns is not None:
                self._give_turn_back()
            if manager._monitoring:
                self._ended(level, None, None)
        if self._guard is not None:
            self._disarm()
        if level.on_commit:
            if manager._isolation is None:
                await run_callbacks(level.on_commit, manager._log)
            else:
                await self._run_on_commit(level.on_commit)

    async def _rolled_back(
        self,
        session: AsyncSession,
        level: Level,
        cause: RollbackCause,
        error: BaseException | None,
    ) -> None:
        """Roll back and close (shielded), then run the on_rollback callbacks."""
        manager = self.manager
        manager._log(
            logging.INFO,
            "rolling back (%s): %r",
            cause,
            error,
            transaction_id=level.transaction_id,
        )
        try:
            await run_shielded(self._roll_back_and_close, session, level.transaction_id)
        finally:
            self._ended(level, cause, error)
        self._disarm()
        await self._run_callbacks(level.on_rollback)

    async def _end_isolated(self, session: AsyncScopedSession, level: Level) -> None:
        """Commit in a test's isolation: release the savepoint, or for a read-only
        transaction (nothing to commit) roll back to it, which also takes back the
        read-only mode it set on the isolation's transaction. A fault the test
        injected comes first, as if the COMMIT had been sent."""
        await self._inject(session, in_flight=True)
        if not level.read_only:
            await session._sessionscope_unscoped.commit(session)
            # What its settings replaced, back for the scopes after it: see
            # Isolated.save_settings().
            isolation = self.manager._isolation
            assert isolation is not None
            restore = isolation.restore(level, isolation.connection.dialect.paramstyle)
            if restore is not None:
                await isolation.connection.exec_driver_sql(*restore)
            return
        await session._sessionscope_unscoped.rollback(session)
        await self._undo_read_only()

    async def _inject(self, session: AsyncScopedSession, in_flight: bool) -> None:
        """A fault the test asked for (``iso.inject()``), if one is due: raised by the
        database through the driver, and the savepoint's work rolled back, as the
        failed COMMIT would leave it."""
        isolation = self.manager._isolation
        assert isolation is not None
        fault = isolation.faults.due(in_flight)
        if fault is None:
            return
        try:
            if isolation.dialect == "postgresql":
                await session.execute(text(server_raise(fault)))
            else:
                raise_sqlite_busy(fault)
            raise SessionScopeError("iso.inject(%r): the database did not fail" % fault)
        except BaseException:
            await session._sessionscope_unscoped.rollback(session)
            raise

    async def _undo_read_only(self) -> None:
        """What rolling back to a savepoint does not undo (SQLite's query_only pragma)."""
        isolation = self.manager._isolation
        if isolation is not None and self.level.read_only and isolation.undo_read_only:
            await isolation.connection.exec_driver_sql(isolation.undo_read_only)

    async def _roll_back_and_close(self, session: AsyncSession, transaction_id: int) -> None:
        await self._close(session, transaction_id, rollback=True)

    async def _close(
        self, session: AsyncSession, transaction_id: int, *, rollback: bool = False
    ) -> None:
        """Return the connection to the pool whatever happens; never raises an Exception."""
        manager = self.manager
        try:
            if rollback:
                try:
                    # Explicitly, not left to close(): SQLite keeps its transaction
                    # open when it refuses a COMMIT (a deferred constraint, BUSY), and
                    # SQLAlchemy would hand the connection back to the pool in it.
                    await session.rollback()
                except IllegalStateChangeError:
                    pass  # another task is inside the session: close once it has left
                except Exception:
                    await session.invalidate()  # a connection we cannot reset must not return
                await self._undo_read_only()
            await _close_when_idle(session)
        except Exception as close_error:
            manager._log(
                logging.ERROR,
                "closing the session failed: %r",
                close_error,
                transaction_id=transaction_id,
            )
            try:
                await session.invalidate()
            except Exception:
                pass
        finally:
            self._give_turn_back()
            if manager._logs_debug:
                manager._log(logging.DEBUG, "session closed", transaction_id=transaction_id)


def _outcome_unknown(error: BaseException) -> CommitOutcomeUnknownError:
    return CommitOutcomeUnknownError(
        "the connection was lost while COMMIT was in flight: the transaction "
        "may or may not have been committed (%r)" % (error,)
    )


async def _close_when_idle(session: AsyncSession) -> None:
    """Close the session, waiting (boundedly) for another task or thread to leave it.

    Code that shares a session with a task of its own (``asyncio.gather`` does
    not cancel the others when one fails) can still be inside it when the scope
    ends; SQLAlchemy then refuses to close it mid-operation, and the connection
    would stay checked out.
    """
    delay = 0.001
    for _ in range(_CLOSE_ATTEMPTS):
        try:
            await session.close()
            return
        except IllegalStateChangeError:
            await sleep(delay)
            delay = min(delay * 2, 0.25)
    await session.close()


_CLOSE_ATTEMPTS = 30  # about five seconds in all
