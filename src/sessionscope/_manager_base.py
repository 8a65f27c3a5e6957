"""What a manager of either flavour is, and does without awaiting anything.

The flavour classes (``_async/manager.py`` and its generated twin) are thin:
they name their SQLAlchemy classes (a ``Flavour``) and add what awaits
(``dispose()``, ``get_db()``) and the typed ``session_scope()`` and
``with_session()``. Everything else is here: turning a URL, an engine or a
sessionmaker into the manager's engine and sessionmaker, the session events,
logging, and checking a scope's options against the database.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import URL, Engine, event, make_url
from sqlalchemy.exc import ArgumentError, InvalidRequestError, NoSuchModuleError
from sqlalchemy.pool import SingletonThreadPool, StaticPool

from . import _fork
from ._begin import begin_listener
from ._failover import watch_for_demotion
from ._fast_read import read_only_engine
from ._holders import Watchdog, statement_ended, statement_failed, statement_started
from ._isolation import Isolated
from ._options import (
    ISOLATION_LEVELS,
    ScopeOptions,
    defaults_from,
    resolve_retry_options,
    resolve_scope_options,
)
from ._ownership import OWNERSHIP_LISTENERS
from ._replicas import Replica, ReplicaSet, connection_level
from ._sqlite import restore_query_only
from .config import SessionConfig
from .errors import ConfigurationError
from .monitor import SessionMonitor

__all__ = ["Flavour", "ManagerBase"]

logger = logging.getLogger("sessionscope")

# The levels a dialect accepts, where it does not take them all.
_ISOLATION_LEVELS: dict[str, tuple[str, ...]] = {"sqlite": ("SERIALIZABLE", "READ UNCOMMITTED")}


@dataclass(frozen=True, slots=True)
class Flavour:
    """The SQLAlchemy classes and compat functions of one flavour."""

    is_async: bool
    engine_class: type[Any]  # AsyncEngine or Engine
    sessionmaker_class: type[Any]  # async_sessionmaker or sessionmaker
    session_class: type[Any]  # AsyncSession or Session
    create_engine: Callable[..., Any]
    sync_engine_of: Callable[[Any], Engine]
    other_flavour: Callable[[object], str | None]
    listen_session_events: Callable[[Any, Mapping[str, Callable[..., Any]]], None]
    turns_class: type[Any]  # Turns
    # The manager's session class for a base class: session_class() of _async/session.py
    scoped_session_class: Callable[[type[Any]], type[Any]]


class ManagerBase:
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
    on it, one transaction at a time (``pool_timeout`` bounds the wait).
    """

    _flavour: Flavour
    is_async: bool

    def __init__(
        self,
        bind: object,
        *,
        replicas: Sequence[object] | None = None,
        config: SessionConfig | None = None,
        **engine_options: Any,
    ) -> None:
        if config is None:
            config = SessionConfig()
        elif not isinstance(config, SessionConfig):
            raise ConfigurationError(f"config must be a SessionConfig, got {config!r}")
        self.config = config
        engine, maker, self._owns_engine = self._resolve_bind(bind, engine_options)
        # The read-only fast path's bind on the primary (_fast_read.py): None until it
        # is decided, False where there is none; made from the manager's own engine's
        # URL and options, under a lock (two threads must not both make one).
        self._engine_options = engine_options
        self._read_engine: Any = None
        self._read_bind: Any = None if self._owns_engine else False
        self._read_lock = threading.Lock()
        self.engine: Any = engine
        self.sessionmaker: Any = maker
        self.name = engine.url.render_as_string(hide_password=True)
        self._prepare_sessions(maker)
        watch_for_demotion(self._sync_engine)
        self._read_only_prepared = False  # see _resolve_options()
        # A pool that hands every session the same connection: scopes take turns.
        self._turns: Any = None
        sync_engine = self._sync_engine
        self._pool_timeout = _pool_timeout(sync_engine, engine_options)
        if isinstance(sync_engine.pool, StaticPool | SingletonThreadPool):
            self._turns = self._flavour.turns_class(self._pool_timeout)
        # A test's isolation (sessionscope.testing), while one is active.
        self._isolation: Isolated | None = None
        # The sessionmaker of the manager's sessions in an isolation (made at the first).
        self._isolation_maker: Any = None
        # Engines that set an isolation level on the connections they check out, by level.
        self._isolated_binds: dict[str, Any] = {}
        self._monitoring = config.enable_monitoring
        self._slow_transaction_seconds = config.slow_transaction_seconds
        # Who holds the pool (_holders.py): the scopes holding a connection, those
        # waiting for one, and the watchdog that warns of them (monitoring on).
        self._holders: dict[Any, None] = {}
        self._waiting: dict[Any, None] = {}
        self._watchdog: Watchdog | None = None
        self._watching_idle = config.idle_scope_seconds is not None
        slow, idle = config.slow_checkout_seconds, config.idle_scope_seconds
        if config.enable_monitoring and (slow is not None or idle is not None):
            self._watchdog = Watchdog(self, slow, idle)
            self._watch_statements(engine)
        self.monitor = SessionMonitor(self.name, lambda: sync_engine.pool, config.enable_monitoring)
        self._log_level = config.log_level_number
        # Whether the DEBUG records of every scope are wanted: checked before building them.
        self._logs_debug = self._log_level <= logging.DEBUG
        # Numbers for the transactions of this manager, in log records and events.
        self._transaction_ids = itertools.count(1)
        self._default_options = defaults_from(config)
        self._check_setup(self._default_options, "SessionConfig")
        # How a with-block retries getting its connection (it cannot re-run its body).
        self._connect_retry = resolve_retry_options(config, {})
        try:
            self._replicas = self._resolve_replicas(replicas, engine_options)
        except BaseException:
            if self._owns_engine:
                sync_engine.dispose()
            raise
        if self._replicas is not None:
            self.monitor.engines = self._engine_figures
            self.monitor.reset_engines = self._replicas.reset_counts
        _fork.watch(self)

    @property
    def _sync_engine(self) -> Engine:
        return self._flavour.sync_engine_of(self.engine)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"

    def _prepare_sessions(self, maker: Any) -> None:
        """The session events: each transaction's options, and the ownership rules."""
        listener = begin_listener(self._sync_engine)
        listeners: dict[str, Callable[..., Any]] = dict(OWNERSHIP_LISTENERS)
        if listener is not None:
            listeners["after_begin"] = listener
        self._flavour.listen_session_events(maker, listeners)
        # Where read-only needs something done as each transaction begins, the listener does it.
        self._read_only_supported = listener is not None

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
                f"isolation_level={resolved.isolation_level!r} is not available on {dialect}; "
                f"choose one of: {', '.join(levels)}"
            )
        if resolved.read_only and not self._read_only_supported:
            raise ConfigurationError(
                f"read_only=True is supported on PostgreSQL and SQLite, not on {dialect!r}"
            )
        if resolved.read_only and not self._read_only_prepared:
            if dialect == "sqlite":
                restore_query_only(self._sync_engine)
            self._read_only_prepared = True
        if resolved.setup is not None or resolved.deadline is not None:
            self._check_setup(resolved, where)
        if resolved.after is not None:
            self._check_tokens(where)
        return resolved

    def _check_setup(self, options: ScopeOptions, where: str) -> None:
        """What a transaction starts with (``_settings.py``), against this database."""
        dialect = self.engine.dialect.name
        setup = options.setup
        if dialect == "postgresql":
            return
        if dialect != "sqlite" or self.engine.dialect.driver not in ("pysqlite", "aiosqlite"):
            if setup is not None and (
                setup.settings or setup.has_limits or setup.idle_in_transaction_timeout
            ):
                raise ConfigurationError(
                    f"{where}: settings and timeouts are available on PostgreSQL and on "
                    f"SQLite (sqlite3, aiosqlite), not on {dialect} ({self.engine.dialect.driver})"
                )
            return
        if setup is not None and setup.settings:
            raise ConfigurationError(
                f"{where}: settings={dict(setup.settings)!r} need PostgreSQL's set_config(); "
                "SQLite has no settings of a transaction"
            )
        if setup is not None and setup.idle_in_transaction_timeout is not None:
            raise ConfigurationError(
                f"{where}: idle_in_transaction_timeout={setup.idle_in_transaction_timeout!r} "
                "is PostgreSQL's; SQLite has no server to end an idle transaction"
            )
        # The limits themselves (statement clock, busy timeout) are undone where the
        # connection goes back to the pool: _sqlite_limits.py.

    def _isolated_session(self, isolation_level: str) -> Any:
        """A new session whose every transaction runs at ``isolation_level``: bound to
        an engine that sets it on each connection it checks out (and SQLAlchemy
        resets it as the connection goes back to the pool)."""
        bind = self._isolated_binds.get(isolation_level)
        if bind is None:
            bind = self.engine.execution_options(isolation_level=isolation_level)
            self._isolated_binds[isolation_level] = bind
        return self.sessionmaker(bind=bind)

    def _watch_statements(self, engine: Any) -> None:
        """Let the idle watch see the statements of an engine the manager's scopes use."""
        if self._watchdog is not None and self._watching_idle:
            sync_engine = self._flavour.sync_engine_of(engine)
            event.listen(sync_engine, "before_cursor_execute", statement_started)
            event.listen(sync_engine, "after_cursor_execute", statement_ended)
            event.listen(sync_engine, "handle_error", statement_failed)

    def _fast_primary(self) -> Any:
        """The primary's bind for a read-only fast-path scope, or None."""
        bind = self._read_bind
        if bind is not None:
            return bind or None
        if self.engine.dialect.name != "postgresql":
            self._read_bind = False
            return None
        level = connection_level(self.engine)
        if level is not None and level != "READ COMMITTED":
            return None  # another level: asked again (the engine may learn the server's)
        # Not known yet (no connection so far): each new connection checks it.
        with self._read_lock:
            if self._read_bind is None:
                engine = read_only_engine(
                    self._flavour.create_engine, self.engine.url, self._engine_options
                )
                self._read_engine = engine
                self._read_bind = False
                if engine is not None:
                    self._watch_statements(engine)
                    self._read_bind = engine.execution_options(isolation_level="AUTOCOMMIT")
        return self._read_bind or None

    def _no_fast_primary(self, error: BaseException) -> None:
        """The primary refused the fast path's startup parameter: PgBouncer. Its
        read-only scopes keep a READ ONLY transaction from now on."""
        with self._read_lock:
            engine, self._read_engine, self._read_bind = self._read_engine, None, False
        if engine is not None:
            self._flavour.sync_engine_of(engine).dispose()
        self._log(
            logging.INFO,
            "read-only scopes on the primary run in READ ONLY transactions: it refused the "
            "startup parameter default_transaction_read_only (PgBouncer?): %s",
            error,
        )

    def _after_fork(self) -> None:
        """In a forked child: the pool's connections are the parent's (see _fork.py)."""
        self._sync_engine.dispose(close=False)
        self._holders.clear()  # the parent's scopes
        self._waiting.clear()
        if self._watchdog is not None:
            self._watchdog.forked()
        if self._read_engine:
            self._flavour.sync_engine_of(self._read_engine).dispose(close=False)
        for replica in self._replicas.replicas if self._replicas is not None else ():
            self._flavour.sync_engine_of(replica.engine).dispose(close=False)
        if self._turns is not None:
            # It may have been taken when the parent forked.
            self._turns = self._flavour.turns_class(self._turns.timeout)

    # -- replicas ------------------------------------------------------------------

    def _resolve_replicas(
        self, replicas: Sequence[object] | None, engine_options: dict[str, Any]
    ) -> ReplicaSet | None:
        """The replicas' engines: made from URLs with the primary's engine options
        (and disposed by the manager), or the engines given (left alone)."""
        if replicas is None:
            return None
        if isinstance(replicas, str | URL) or not isinstance(replicas, Sequence):
            raise ConfigurationError(
                f"replicas must be a list of database URLs or engines, got {replicas!r}"
            )
        engine_class = self._flavour.engine_class
        for bind in replicas:
            if not isinstance(bind, str | URL | engine_class):
                instead = self._flavour.other_flavour(bind)
                if instead is not None:
                    raise ConfigurationError(
                        f"replica {type(bind).__name__} belongs to the other flavour: "
                        f"use {instead} for it"
                    )
                raise ConfigurationError(
                    f"a replica must be a database URL or an {engine_class.__name__}, got {bind!r}"
                )
        if not replicas:
            return None
        if self.engine.dialect.name != "postgresql":
            raise ConfigurationError(
                f"replicas are PostgreSQL streaming replicas; {self.name} is "
                f"{self.engine.dialect.name}"
            )
        made: list[Replica] = []
        try:
            for bind in replicas:
                made.append(self._replica(bind, engine_options))
        except BaseException:
            for replica in made:
                if replica.owned:
                    self._flavour.sync_engine_of(replica.engine).dispose()
            raise
        return ReplicaSet(made, self.config)

    def _replica(self, bind: object, engine_options: dict[str, Any]) -> Replica:
        if isinstance(bind, str | URL):
            engine, owned = self._create_engine(bind, engine_options), True
        else:  # an engine of this flavour: see _resolve_replicas()
            self._check_driver(bind)
            engine, owned = bind, False
        name = engine.url.render_as_string(hide_password=True)
        problem = None
        if engine.dialect.name != "postgresql":
            problem = f"replica {name} is {engine.dialect.name}; replicas are PostgreSQL servers"
        elif connection_level(engine) == "SERIALIZABLE":
            problem = (
                f"replica {name} would run every transaction at SERIALIZABLE, which a hot "
                "standby refuses: choose isolation_level per scope (read-only SERIALIZABLE "
                "scopes run on the primary), or give the replicas as engines of their own"
            )
        if problem is not None:
            if owned:
                self._flavour.sync_engine_of(engine).dispose()
            raise ConfigurationError(problem)
        self._watch_statements(engine)
        return Replica(engine, name, owned)

    def _check_tokens(self, where: str) -> None:
        if self.engine.dialect.name != "postgresql":
            raise ConfigurationError(
                f"{where}: commit tokens are PostgreSQL WAL positions; {self.name} is "
                f"{self.engine.dialect.name}"
            )

    def _engine_figures(self) -> list[dict[str, Any]]:
        """Per engine, for the monitor: the primary's and each replica's."""
        replicas = self._replicas
        assert replicas is not None
        figures = replicas.figures(time.monotonic())
        primary = {
            "name": self.name,
            "role": "primary",
            "routed": None,  # filled in by the monitor: every session not on a replica
            "fallbacks": replicas.fallbacks,
        }
        return [primary, *figures]

    # -- the bind ------------------------------------------------------------------

    def _resolve_bind(self, bind: object, engine_options: dict[str, Any]) -> tuple[Any, Any, bool]:
        """The engine, our sessionmaker, and whether we own (and so dispose) the engine."""
        flavour = self._flavour
        engine_class, maker_class = flavour.engine_class, flavour.sessionmaker_class
        instead = flavour.other_flavour(bind)
        if instead is not None:
            raise ConfigurationError(
                f"{type(bind).__name__} belongs to the other flavour: use {instead} for it"
            )
        if isinstance(bind, str | URL):
            engine = self._create_engine(bind, engine_options)
            return engine, self._own_sessionmaker(None, engine), True
        if engine_options:
            raise ConfigurationError(
                f"engine options {sorted(engine_options)} apply only when bind is a URL; "
                f"configure the {type(bind).__name__} you pass instead"
            )
        if isinstance(bind, engine_class):
            self._check_driver(bind)
            return bind, self._own_sessionmaker(None, bind), False
        if isinstance(bind, maker_class):
            maker_bind = bind.kw.get("bind")
            if not isinstance(maker_bind, engine_class):
                raise ConfigurationError(
                    f"the {maker_class.__name__} has no {engine_class.__name__} bind "
                    f"(bind={maker_bind!r}); configure it with one"
                )
            return maker_bind, self._own_sessionmaker(bind, maker_bind), False
        raise ConfigurationError(
            f"bind must be a database URL, an {engine_class.__name__} or a "
            f"{maker_class.__name__}, got {bind!r}"
        )

    def _create_engine(self, url: str | URL, engine_options: dict[str, Any]) -> Any:
        try:
            parsed = make_url(url)
        except ArgumentError as exc:
            raise ConfigurationError(f"not a database URL: {url!r} ({exc})") from exc
        shown = parsed.render_as_string(hide_password=True)
        _check_hosts(parsed)
        if _is_sqlite_memory(parsed) and "poolclass" not in engine_options:
            # pysqlite's default pool gives each thread a connection, and so a
            # database, of its own: one database per manager, as with aiosqlite.
            connect_args = {"check_same_thread": False, **engine_options.get("connect_args", {})}
            engine_options = {
                **engine_options,
                "poolclass": StaticPool,
                "connect_args": connect_args,
            }
            engine_options.pop("pool_timeout", None)  # the turn's: see _pool_timeout()
        try:
            engine = self._flavour.create_engine(parsed, **engine_options)
        except (
            ArgumentError,
            InvalidRequestError,
            NoSuchModuleError,
            ImportError,
            TypeError,
        ) as exc:
            hint = _install_hint(exc)
            raise ConfigurationError(f"cannot create an engine for {shown}: {exc}{hint}") from exc
        try:
            self._check_driver(engine)
        except ConfigurationError:
            # It never connected (its pool is still empty): drop it.
            self._flavour.sync_engine_of(engine).pool.dispose()
            raise
        return engine

    def _check_driver(self, engine: Any) -> None:
        if engine.dialect.is_async is not self.is_async:
            shown = engine.url.render_as_string(hide_password=True)
            kind = "async" if engine.dialect.is_async else "sync"
            wanted = "async" if self.is_async else "sync"
            raise ConfigurationError(
                f"the driver {engine.dialect.driver!r} of {shown} is {kind}, and this manager "
                f"needs a {wanted} driver; change the URL's driver or use the other manager"
            )

    def _own_sessionmaker(self, borrowed: Any, bind: Any) -> Any:
        """Our sessionmaker: the borrowed one's settings, objects that stay readable after
        commit, and sessions that cannot be used again once closed."""
        flavour = self._flavour
        if borrowed is None:
            return flavour.sessionmaker_class(
                bind,
                class_=flavour.scoped_session_class(flavour.session_class),
                expire_on_commit=False,
                close_resets_only=False,
            )
        settings = dict(borrowed.kw)
        settings.update(expire_on_commit=False, close_resets_only=False)
        return flavour.sessionmaker_class(
            class_=flavour.scoped_session_class(borrowed.class_), **settings
        )


def _check_hosts(url: URL) -> None:
    """A multi-host URL lists each host with its port as a ``host=`` of its own: the
    form with commas fails on psycopg (late, as an unknown host) and asyncpg."""
    hosts = url.query.get("host", ())
    for host in (hosts,) if isinstance(hosts, str) else hosts:
        if "," in host and ":" in host:
            raise ConfigurationError(
                f"host={host!r}: give each host with its port as a host= parameter of its "
                "own, ?host=h1:5432&host=h2:5432 (the comma form fails on psycopg and asyncpg)"
            )


def _is_sqlite_memory(url: URL) -> bool:
    database = url.database or ""
    return url.get_backend_name() == "sqlite" and (
        database in ("", ":memory:") or database.startswith("file::memory:")
    )


def _pool_timeout(engine: Engine, engine_options: Mapping[str, Any]) -> float:
    """How long a checkout waits for a connection (``pool_timeout``; 30 s by default),
    also for the turn on a pool of one connection, whose class takes no timeout."""
    timeout = engine_options.get("pool_timeout", getattr(engine.pool, "_timeout", 30.0))
    return float(timeout)


# The extras of sessionscope that bring a driver, by the module a dialect imports.
_DRIVER_EXTRAS = {"aiosqlite": "aiosqlite", "asyncpg": "asyncpg", "psycopg": "psycopg"}


def _install_hint(error: BaseException) -> str:
    """What to install when the URL's driver is missing."""
    missing = getattr(error, "name", None) if isinstance(error, ImportError) else None
    if not missing:
        return ""
    module = missing.split(".")[0]
    extra = _DRIVER_EXTRAS.get(module)
    if extra is not None:
        return f'; pip install "sessionscope[{extra}]"'
    return f"; install the driver that provides the {module!r} module"
