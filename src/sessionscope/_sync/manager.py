# Generated from src/sessionscope/_async/manager.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""The manager of this flavour: an engine, a sessionmaker and the scopes opened on them."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, Unpack, overload

from sqlalchemy import URL, make_url
from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from .. import _fork
from .._begin import begin_listener
from .._options import (
    ISOLATION_LEVELS,
    ScopeKwargs,
    ScopeOptions,
    SessionKwargs,
    defaults_from,
    resolve_retry_options,
    resolve_scope_options,
)
from .._ownership import OWNERSHIP_LISTENERS
from .._sqlite import restore_query_only
from .._sync_compat import (
    IS_ASYNC,
    Engine,
    Outcome,
    Session,
    Turns,
    create_engine,
    listen_session_events,
    other_flavour,
    sessionmaker,
    sync_engine_of,
)
from ..config import SessionConfig
from ..errors import ConfigurationError
from ..monitor import SessionMonitor
from .decorator import SyncSessionDecorator, session_function
from .scope import SessionScope
from .session import ScopedSession, session_class

__all__ = ["SessionManager"]

logger = logging.getLogger("sessionscope")

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

# The levels a dialect accepts, where it does not take them all.
_ISOLATION_LEVELS: dict[str, tuple[str, ...]] = {"sqlite": ("SERIALIZABLE", "READ UNCOMMITTED")}


class SessionManager:
    """Opens transactional scopes on one database.

    ``bind`` is a database URL (the manager creates the engine, passing it
    ``engine_options``, and disposes it), an engine or an existing
    sessionmaker of this flavour (borrowed: the application keeps its pool and
    session configuration, and the manager never disposes them). Sessions the
    manager makes never expire objects on commit, so what a scope loaded stays
    readable after it, and they refuse any use after their scope has ended.

    An in-memory SQLite database lives in one connection: the manager gives
    every session that connection (a ``StaticPool``, unless ``engine_options``
    choose a pool), so all its scopes see one database, and they take turns
    on it, one transaction at a time.
    """

    is_async = IS_ASYNC

    def __init__(
        self,
        bind: str | URL | Engine | sessionmaker[Any],
        *,
        config: SessionConfig | None = None,
        **engine_options: Any,
    ) -> None:
        if config is None:
            config = SessionConfig()
        elif not isinstance(config, SessionConfig):
            raise ConfigurationError("config must be a SessionConfig, got %r" % (config,))
        self.config = config
        engine, maker, self._owns_engine = _resolve_bind(bind, engine_options)
        self.engine = engine
        self.sessionmaker = maker
        self.name = engine.url.render_as_string(hide_password=True)
        sync_engine = sync_engine_of(engine)
        listener = begin_listener(sync_engine)
        listeners: dict[str, Callable[..., Any]] = dict(OWNERSHIP_LISTENERS)
        if listener is not None:
            listeners["after_begin"] = listener
        listen_session_events(maker, listeners)
        # Where read-only needs something done as each transaction begins, the listener does it.
        self._read_only_supported = listener is not None
        self._read_only_prepared = False  # see resolve_options()
        # A pool that hands every session the same connection: scopes take turns.
        self._turns: Turns | None = None
        if _shares_one_connection(sync_engine):
            self._turns = Turns(_pool_timeout(sync_engine, engine_options))
        # Engines that set an isolation level on the connections they check out, by level.
        self._isolated_binds: dict[str, Engine] = {}
        self._monitoring = config.enable_monitoring
        self._slow_transaction_seconds = config.slow_transaction_seconds
        self.monitor = SessionMonitor(self.name, lambda: sync_engine.pool, config.enable_monitoring)
        self._log_level = config.log_level_number
        # Whether the DEBUG records of every scope are wanted: checked before building them.
        self._logs_debug = self._log_level <= logging.DEBUG
        # Numbers for the transactions of this manager, in log records and events.
        self._transaction_ids = itertools.count(1)
        self._default_options = defaults_from(config)
        # How a with-block retries getting its connection (it cannot re-run its body).
        self._connect_retry = resolve_retry_options(config, {})
        _fork.watch(self)

    def __repr__(self) -> str:
        return "<%s %s>" % (type(self).__name__, self.name)

    def _log(
        self,
        level: int,
        message: str,
        *args: object,
        transaction_id: int | None = None,
        exc_info: bool = False,
    ) -> None:
        """Log on the ``sessionscope`` logger if ``level`` reaches this manager's log_level.

        Records say which manager and transaction they are about, in the text
        and as the attributes ``sessionscope_manager`` and ``transaction_id``.
        """
        if level >= self._log_level and logger.isEnabledFor(level):
            logger.log(
                level,
                "[%s tx=%s] " + message,
                self.name,
                transaction_id,
                *args,
                exc_info=exc_info,
                extra={"sessionscope_manager": self.name, "transaction_id": transaction_id},
            )

    def session_scope(self, **options: Unpack[ScopeKwargs]) -> SessionScope:
        """A transactional scope; its class's docstring explains the nesting rules."""
        if not options:
            return SessionScope(self, self._default_options)
        return SessionScope(self, self._resolve_options(options))

    def _resolve_options(
        self,
        options: Mapping[str, Any],
        where: str = "session_scope()",
        connect_retries: int | None = None,
    ) -> ScopeOptions:
        """Scope options over this manager's config, checked against its database."""
        resolved = resolve_scope_options(
            self.config, options, where, connect_retries=connect_retries
        )
        dialect = self.engine.dialect.name
        levels = _ISOLATION_LEVELS.get(dialect, ISOLATION_LEVELS)
        if resolved.isolation_level is not None and resolved.isolation_level not in levels:
            raise ConfigurationError(
                "isolation_level=%r is not available on %s; choose one of: %s"
                % (resolved.isolation_level, dialect, ", ".join(levels))
            )
        if resolved.read_only and not self._read_only_supported:
            raise ConfigurationError(
                "read_only=True is supported on PostgreSQL and SQLite, not on %r"
                % self.engine.dialect.name
            )
        if resolved.read_only and not self._read_only_prepared:
            if dialect == "sqlite":
                restore_query_only(sync_engine_of(self.engine))
            self._read_only_prepared = True
        return resolved

    def _isolated_session(self, isolation_level: str) -> ScopedSession:
        """A new session whose every transaction runs at ``isolation_level``: bound to
        an engine that sets it on each connection it checks out (and SQLAlchemy
        resets it as the connection goes back to the pool)."""
        bind = self._isolated_binds.get(isolation_level)
        if bind is None:
            bind = self.engine.execution_options(isolation_level=isolation_level)
            self._isolated_binds[isolation_level] = bind
        session: ScopedSession = self.sessionmaker(bind=bind)
        return session

    def _after_fork(self) -> None:
        """In a forked child: the pool's connections are the parent's (see _fork.py)."""
        sync_engine_of(self.engine).dispose(close=False)
        if self._turns is not None:
            # It may have been taken when the parent forked.
            self._turns = Turns(self._turns.timeout)

    @overload
    def with_session(
        self, fn: Callable[Concatenate[Session, P], Outcome[R]], /
    ) -> Callable[P, Outcome[R]]: ...

    @overload
    def with_session(
        self, fn: Callable[Concatenate[T, Session, P], Outcome[R]], /
    ) -> Callable[Concatenate[T, P], Outcome[R]]: ...

    @overload
    def with_session(
        self, fn: None = None, /, **options: Unpack[SessionKwargs]
    ) -> SyncSessionDecorator: ...

    def with_session(self, fn: Any = None, /, **options: Any) -> Any:
        """Decorate a function whose first parameter takes the session.

        Each call runs in a scope of this manager and gets its session as the
        first argument. A caller may pass a session instead (by keyword or
        first positional argument): a session of an active scope is joined
        under the propagation rules, any other session is used as is, neither
        committed nor closed. Usable bare (``@manager.with_session``) or with
        options (``@manager.with_session(propagation="nested")``).

        In a method (first parameter ``self`` or ``cls``) the session is the
        second parameter; the decorator goes above or below ``@staticmethod``
        and ``@classmethod``. Generator functions are refused: their scope
        would have to stay open between the values they yield.
        """
        if fn is None:
            return lambda fn: session_function(fn, options, self)
        return session_function(fn, options, self)

    def get_db(self) -> Iterator[Session]:
        """A generator dependency (FastAPI ``Depends``, any DI): one scope per use."""
        with self.session_scope() as session:
            yield session

    def dispose(self) -> None:
        """Dispose the engine if this manager created it; a borrowed one is left alone."""
        if self._owns_engine:
            self.engine.dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.dispose()


def _resolve_bind(
    bind: object, engine_options: dict[str, Any]
) -> tuple[Engine, sessionmaker[Any], bool]:
    """The engine, our sessionmaker, and whether we own (and so dispose) the engine."""
    instead = other_flavour(bind)
    if instead is not None:
        raise ConfigurationError(
            "%s belongs to the other flavour: use %s for it" % (type(bind).__name__, instead)
        )
    expected = "a database URL, an %s or an %s" % (
        Engine.__name__,
        sessionmaker.__name__,
    )
    if isinstance(bind, str | URL):
        engine = _create_engine(bind, engine_options)
        return engine, _own_sessionmaker(None, engine), True
    if engine_options:
        raise ConfigurationError(
            "engine options %s apply only when bind is a URL; configure the %s you pass instead"
            % (sorted(engine_options), type(bind).__name__)
        )
    if isinstance(bind, Engine):
        engine = bind
        _check_driver(engine)
        return engine, _own_sessionmaker(None, engine), False
    if isinstance(bind, sessionmaker):
        maker_bind = bind.kw.get("bind")
        if not isinstance(maker_bind, Engine):
            raise ConfigurationError(
                "the %s has no %s bind (bind=%r); configure it with one"
                % (sessionmaker.__name__, Engine.__name__, maker_bind)
            )
        return maker_bind, _own_sessionmaker(bind, maker_bind), False
    raise ConfigurationError("bind must be %s, got %r" % (expected, bind))


def _create_engine(url: str | URL, engine_options: dict[str, Any]) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigurationError("not a database URL: %r (%s)" % (url, exc)) from exc
    shown = parsed.render_as_string(hide_password=True)
    if _is_sqlite_memory(parsed) and "poolclass" not in engine_options:
        # pysqlite's default pool gives each thread a connection, and so a
        # database, of its own: one database per manager, as with aiosqlite.
        connect_args = {"check_same_thread": False, **engine_options.get("connect_args", {})}
        engine_options = {**engine_options, "poolclass": StaticPool, "connect_args": connect_args}
        engine_options.pop("pool_timeout", None)  # the turn's: see _pool_timeout()
    try:
        engine = create_engine(parsed, **engine_options)
    except (ArgumentError, InvalidRequestError, NoSuchModuleError, ImportError, TypeError) as exc:
        raise ConfigurationError("cannot create an engine for %s: %s" % (shown, exc)) from exc
    try:
        _check_driver(engine)
    except ConfigurationError:
        _discard(engine)
        raise
    return engine


def _is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or database.startswith("file::memory:")
    )


def _shares_one_connection(engine: Any) -> bool:
    """Whether every session gets the same connection (in one thread, at least)."""
    return isinstance(engine.pool, StaticPool | SingletonThreadPool)


def _pool_timeout(engine: Any, engine_options: dict[str, Any]) -> float:
    """How long a checkout waits for a connection (``pool_timeout``; 30 s by default),
    also for the turn on a pool of one connection, whose class takes no timeout."""
    timeout = engine_options.get("pool_timeout", getattr(engine.pool, "_timeout", 30.0))
    return float(timeout)


def _discard(engine: Engine) -> None:
    """Drop an engine that never connected (its pool is still empty)."""
    sync_engine_of(engine).pool.dispose()


def _check_driver(engine: Engine) -> None:
    if engine.dialect.is_async is not IS_ASYNC:
        shown = engine.url.render_as_string(hide_password=True)
        kind = "async" if engine.dialect.is_async else "sync"
        wanted = "async" if IS_ASYNC else "sync"
        raise ConfigurationError(
            "the driver %r of %s is %s, and this manager needs a %s driver; "
            "change the URL's driver or use the other manager"
            % (engine.dialect.driver, shown, kind, wanted)
        )


def _own_sessionmaker(borrowed: sessionmaker[Any] | None, bind: Any) -> sessionmaker[Any]:
    """Our sessionmaker: the borrowed one's settings, objects that stay readable after
    commit, and sessions that cannot be used again once closed."""
    if borrowed is None:
        return sessionmaker(
            bind,
            class_=session_class(Session),
            expire_on_commit=False,
            close_resets_only=False,
        )
    settings = dict(borrowed.kw)
    settings.update(expire_on_commit=False, close_resets_only=False)
    return sessionmaker(class_=session_class(borrowed.class_), **settings)
