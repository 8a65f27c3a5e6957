"""``python -m sessionscope check [URL]``: is this database reachable, and does it work?

Opens a manager of the URL's flavour (an async driver gets ``AsyncSessionManager``)
and, in scopes of that manager, reads the server version and default isolation level,
times ``SELECT 1`` (one scope each), checks that a SAVEPOINT really rolls back, and
reads the pool's figures. It says when the URL leads to PgBouncer (which refuses a
startup parameter PostgreSQL takes) and what the driver needs behind it. Exit
status: 0 healthy, 1 unreachable or a check failed, 2 bad usage. The URL's
password is never shown, in any output.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
import secrets
import statistics
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus

from sqlalchemy import URL, create_engine, make_url, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import NullPool

from . import SessionConfig, SessionManager
from ._pooler import (
    PGBOUNCER_CONNECT_ARGS,
    PROBE_CONNECT_ARGS,
    pgbouncer_connect_args,
    refused_startup_parameter,
)
from .errors import ConfigurationError

__all__ = ["ENV_URL", "run_check"]

ENV_URL = "SESSIONSCOPE_URL"
PROG = "python -m sessionscope check"
# The connect() argument that bounds connecting, per driver (others get none).
_TIMEOUT_ARGUMENT = {
    "psycopg": "connect_timeout",
    "psycopg2": "connect_timeout",
    "asyncpg": "timeout",
    "pg8000": "timeout",
    "pymysql": "connect_timeout",
}
_VERSION_SQL = {"postgresql": "SHOW server_version", "sqlite": "SELECT sqlite_version()"}
# Which server answered (a multi-host URL picks one), and whether it is a standby.
_SERVER_SQL = "SELECT pg_is_in_recovery(), host(inet_server_addr()), inet_server_port()"
_PINGS = 5

Report = dict[str, Any]
Scope = Callable[..., AbstractAsyncContextManager[Any]]


class _UsageError(Exception):
    """Bad input: exit status 2."""


class _CheckFailed(Exception):
    """The database answered, but not as it should."""


class _Undo(Exception):
    """Raised to roll a scope of the check back."""


def run_check(url: str | None, *, as_json: bool = False, connect_timeout: int = 5) -> int:
    """Check the database at ``url`` (or ``$SESSIONSCOPE_URL``); the exit status."""
    try:
        parsed, dialect = _parse(url or os.environ.get(ENV_URL, ""), connect_timeout)
    except _UsageError as exc:
        return _usage_error(str(exc))
    scrub = _scrubber(parsed.password)
    _log_to_stderr(scrub)
    report: Report = {  # --json prints every key, null where unknown
        "url": parsed.render_as_string(hide_password=True),
        "flavour": "async" if dialect.is_async else "sync",
        "dialect": dialect.name,
        "driver": dialect.driver,
        "server_version": None,
        "latency_ms": None,
        "savepoints": None,  # stays null if the check could not run
        "isolation_level": None,
        "pool": None,
        "server": None,  # PostgreSQL: the address and port that answered
        "standby": None,  # PostgreSQL: a replica in recovery (read-only)
        "pooler": None,  # "PgBouncer" when the URL leads to one
        "pooler_needs": None,
        "ok": False,
        "error": None,
    }
    try:
        asyncio.run(_check(parsed, bool(dialect.is_async), connect_timeout, report))
    except _UsageError as exc:
        return _usage_error(scrub(str(exc)))
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # say what failed, with neither traceback nor password
        silent_timeout = isinstance(exc, TimeoutError) and not str(exc)  # asyncpg's
        detail = f"no answer within {connect_timeout} s" if silent_timeout else exc
        # Our own failures speak for themselves; a driver's error is named by its class.
        report["error"] = (
            str(detail) if isinstance(exc, _CheckFailed) else (f"{type(exc).__name__}: {detail}")
        )
    report["ok"] = report["error"] is None
    # The password may also be spelt elsewhere (a database name, a driver's message).
    report = {key: scrub(v) if isinstance(v, str) else v for key, v in report.items()}
    print(json.dumps(report, indent=2) if as_json else _human(report))
    if not report["ok"]:
        print(f"{PROG}: error: {report['error']}", file=sys.stderr)
    return 0 if report["ok"] else 1


def _usage_error(message: str) -> int:
    print(f"{PROG}: error: {message}", file=sys.stderr)
    return 2


def _parse(url: str, connect_timeout: int) -> tuple[URL, type[Dialect]]:
    """The URL and its dialect class; _UsageError naming what is wrong."""
    if not url:
        raise _UsageError(f"no database URL: pass one, or set ${ENV_URL}")
    if connect_timeout < 1:
        raise _UsageError("--connect-timeout must be at least 1 second")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):  # not shown: the text may hold a password
        raise _UsageError(
            "not a valid database URL (expected dialect[+driver]://user:password@host:port/db)"
        ) from None
    try:
        return parsed, parsed.get_dialect()
    except (NoSuchModuleError, ImportError) as exc:
        raise _UsageError(f"unknown dialect or driver {parsed.drivername!r}: {exc}") from None


async def _check(parsed: URL, is_async: bool, connect_timeout: int, report: Report) -> None:
    config = SessionConfig(retry_attempts=0, log_level="CRITICAL")  # errors are reported here
    options: dict[str, Any] = {}
    argument = _TIMEOUT_ARGUMENT.get(report["driver"])
    if argument is not None and argument not in parsed.query:
        options["connect_args"] = {argument: connect_timeout}
    if await _behind_pgbouncer(parsed, is_async, options):
        driver = report["driver"]
        report["pooler"] = "PgBouncer"
        needs = PGBOUNCER_CONNECT_ARGS.get(driver, "a driver that keeps no prepared statements")
        report["pooler_needs"] = (
            f"in transaction mode: {needs}; settings only per transaction (sessionscope "
            "uses set_config(..., true)); the read-only fast path on replicas only"
        )
        # The check's own scopes, configured as the report says.
        connect_args = options.setdefault("connect_args", {})
        connect_args.update(pgbouncer_connect_args(driver))
    manager: Any
    try:
        if is_async:
            from . import AsyncSessionManager

            manager = AsyncSessionManager(parsed, config=config, **options)
        else:
            manager = SessionManager(parsed, config=config, **options)
    except (ConfigurationError, ImportError) as exc:  # e.g. the driver is not installed
        raise _UsageError(str(exc)) from None
    try:
        if parsed.get_backend_name() == "sqlite":
            _require_sqlite_file(parsed)
        await _probe(manager, _scope_of(manager), report)
    finally:
        await _maybe(manager.dispose())


async def _behind_pgbouncer(parsed: URL, is_async: bool, options: dict[str, Any]) -> bool:
    """Whether a connection with a startup parameter PgBouncer refuses is refused.
    Any other error is left to the scopes that follow, which report it."""
    probe = PROBE_CONNECT_ARGS.get(parsed.get_dialect().driver)
    if probe is None or parsed.get_backend_name() != "postgresql":
        return False
    connect_args = {**options.get("connect_args", {}), **probe}
    try:
        if is_async:
            from sqlalchemy.ext.asyncio import create_async_engine

            async_engine = create_async_engine(
                parsed, poolclass=NullPool, connect_args=connect_args
            )
            try:
                async with async_engine.connect():
                    pass
            finally:
                await async_engine.dispose()
        else:
            engine = create_engine(parsed, poolclass=NullPool, connect_args=connect_args)
            try:
                with engine.connect():
                    pass
            finally:
                engine.dispose()
    except Exception as exc:
        return refused_startup_parameter(exc)
    return False


def _require_sqlite_file(parsed: URL) -> None:
    """A check must not create the database file it was asked about."""
    database = parsed.database or ""
    uri = database.startswith("file:") or parsed.query.get("uri") == "true"
    if database not in ("", ":memory:") and not uri and not Path(database).exists():
        raise _CheckFailed(f"no SQLite database file {database}")


async def _probe(manager: Any, scope: Scope, report: Report) -> None:
    """Fill ``report`` from scopes of ``manager``; raise at the first failure."""
    version_sql = _VERSION_SQL.get(manager.engine.dialect.name)
    async with scope() as session:  # connects first, so the timings below are warm
        connection = await _maybe(session.connection())
        if version_sql is None:
            info = manager.engine.dialect.server_version_info or ()
            report["server_version"] = ".".join(map(str, info)) or None
        else:
            result = await _maybe(session.execute(text(version_sql)))
            report["server_version"] = str(result.scalar())
        report["isolation_level"] = await _maybe(connection.get_isolation_level())
        if manager.engine.dialect.name == "postgresql":
            row = (await _maybe(session.execute(text(_SERVER_SQL)))).one()
            report["standby"] = bool(row[0])
            report["server"] = None if row[1] is None else f"{row[1]}:{row[2]}"

    timings = []
    for _ in range(_PINGS):
        started = time.perf_counter()
        async with scope() as session:
            await _maybe(session.execute(text("SELECT 1")))
        timings.append((time.perf_counter() - started) * 1000)
    report["latency_ms"] = {
        "median": round(statistics.median(timings), 3),
        "min": round(min(timings), 3),
        "max": round(max(timings), 3),
    }

    if not report["standby"]:  # a standby refuses the check's TEMP table: no writes
        rows = await _rows_after_savepoint_rollback(scope)
        report["savepoints"] = rows == ["outer"]
        if not report["savepoints"]:
            raise _CheckFailed(f"rolled back to a SAVEPOINT, yet the rows are {rows}")
    pool = manager.monitor.pool_status()
    if all(value is None for value in pool.values()):
        # A pool that keeps no figures (StaticPool, NullPool, ...): say which it is.
        report["pool"] = {"class": type(manager.engine.pool).__name__}
    else:
        report["pool"] = pool


async def _rows_after_savepoint_rollback(scope: Scope) -> list[str]:
    """Insert "outer", then "inner" in a nested scope left by an exception; the rows.

    The outer scope is rolled back too (its TEMP table with it): nothing is left behind.
    """
    table = f"sessionscope_check_{secrets.token_hex(4)}"
    insert = text(f"INSERT INTO {table} (tag) VALUES (:tag)")
    rows: list[str] = []
    try:
        async with scope() as session:
            await _maybe(session.execute(text(f"CREATE TEMPORARY TABLE {table} (tag VARCHAR(8))")))
            await _maybe(session.execute(insert, {"tag": "outer"}))
            try:
                async with scope(propagation="nested") as nested:
                    await _maybe(nested.execute(insert, {"tag": "inner"}))
                    raise _Undo
            except _Undo:
                pass
            result = await _maybe(session.execute(text(f"SELECT tag FROM {table} ORDER BY tag")))
            rows = list(result.scalars())
            raise _Undo
    except _Undo:
        pass
    return rows


def _scope_of(manager: Any) -> Scope:
    """``manager.session_scope``, as an async context manager for either flavour."""
    if not isinstance(manager, SessionManager):
        return manager.session_scope  # type: ignore[no-any-return]

    @asynccontextmanager
    async def scope(**options: Any) -> AsyncIterator[Any]:
        # The sync flavour runs on the event loop's thread: its calls simply block.
        with manager.session_scope(**options) as session:
            yield session

    return scope


async def _maybe(value: Any) -> Any:
    """``value``, awaited if it is awaitable (the async flavour's methods)."""
    return await value if inspect.isawaitable(value) else value


def _scrubber(password: str | None) -> Callable[[str], str]:
    """A function replacing the password, in its usual spellings, with ``***``."""
    forms: list[str] = []
    if password:  # longest first: one spelling may contain another
        spellings = {password, quote(password, safe=""), quote_plus(password), repr(password)[1:-1]}
        forms = sorted(spellings, key=len, reverse=True)

    def scrub(message: str) -> str:
        for form in forms:
            message = message.replace(form, "***")
        return message

    return scrub


class _ScrubbingFormatter(logging.Formatter):
    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__("%(levelname)s %(name)s: %(message)s")
        self._scrub = scrub

    def format(self, record: logging.LogRecord) -> str:
        return self._scrub(super().format(record))


def _log_to_stderr(scrub: Callable[[str], str]) -> None:
    """Warnings and log records of drivers go to stderr scrubbed (not via lastResort)."""
    root = logging.getLogger()
    if not root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setLevel(logging.WARNING)
        handler.setFormatter(_ScrubbingFormatter(scrub))
        root.addHandler(handler)
        logging.captureWarnings(True)


def _human(report: Report) -> str:
    latency, pool, savepoints = report["latency_ms"], report["pool"], report["savepoints"]
    lines = {
        "database": report["url"],
        "flavour": report["flavour"],
        "dialect": f"{report['dialect']} (driver {report['driver']})",
        "server version": report["server_version"],
        "latency": latency
        and f"{latency['median']:.2f} ms median, min {latency['min']:.2f}, "
        f"max {latency['max']:.2f} ({_PINGS} x SELECT 1, a scope each)",
        "server": report["server"],
        "standby": None
        if report["standby"] is None
        else (
            "yes: a replica, read-only (savepoints not checked: they need a write)"
            if report["standby"]
            else "no"
        ),
        "savepoints": None if savepoints is None else ("work" if savepoints else "DO NOT WORK"),
        "isolation level": report["isolation_level"],
        "pool": pool and ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in pool.items()),
        "pooler": report["pooler"] and f"{report['pooler']}: {report['pooler_needs']}",
        "status": "OK" if report["ok"] else "FAILED",
    }
    return "\n".join(f"{name:<16} {'-' if v is None else v}" for name, v in lines.items())
