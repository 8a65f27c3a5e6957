"""Root fixtures of the test suite, the same for both flavours.

Backends
--------
Behaviour tests are parametrized by a fixture (or argument) named ``backend`` whose
values are backend names: ``"sqlite"``, ``"psycopg"``, ``"asyncpg"`` (test ids show
them, e.g. ``test_commit[psycopg]``). Every name but a SQLite one is a PostgreSQL
backend. At collection, this file marks ``postgres`` every test whose ``backend`` is a
PostgreSQL one, and every test without a ``backend`` that asks for ``pg_server`` through
its arguments or fixtures (a fixture that serves both kinds of backend should ask with
``request.getfixturevalue("pg_server")`` only for PostgreSQL ones). To restrict a run::

    pytest --backends=sqlite            # or SESSIONSCOPE_TEST_BACKENDS=sqlite pytest
    pytest --backends=sqlite,asyncpg    # a name also selects ids that start with it
    pytest --backends=postgres          # every PostgreSQL backend
    pytest -m "not postgres"            # the same tests as --backends=sqlite

Tests with no backend at all always run. Deselected tests are reported as deselected.

PostgreSQL
----------
``pg_server`` (session scope) is a :class:`tests.pg_server.PostgresServer`: a throwaway
server started from the local binaries once per run, or the one named by
``SESSIONSCOPE_TEST_PG_URL``. With no PostgreSQL, the tests that need it are skipped,
but fail when ``CI`` is set: a missing PostgreSQL must never pass CI unnoticed. A test
that stops the server should start it again itself; if it fails to, the server is
started again after that test.

``backend_count``, ``idle_in_transaction_count`` and ``terminate_backends`` look at
the other client connections to the test database (the same as the server's methods).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.pg_bouncer import PgBouncer
from tests.pg_server import ENV_URL, PostgresServer, PostgresUnavailable, find_bindir

ENV_BACKENDS = "SESSIONSCOPE_TEST_BACKENDS"
BACKENDS = ("sqlite", "psycopg", "asyncpg")
FAMILIES = ("sqlite", "postgres")

_server: PostgresServer | None = None


# -- helpers -------------------------------------------------------------------------


def backend_count(pg_server: PostgresServer) -> int:
    """How many other client connections the test database has."""
    return pg_server.backend_count()


def idle_in_transaction_count(pg_server: PostgresServer) -> int:
    """How many other connections to the test database sit idle inside a transaction."""
    return pg_server.idle_in_transaction_count()


def terminate_backends(pg_server: PostgresServer) -> int:
    """``pg_terminate_backend()`` all other clients of the test database; how many."""
    return pg_server.terminate_backends()


def is_postgres_backend(name: str) -> bool:
    return "sqlite" not in name


# -- backend selection -----------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--backends",
        default=os.environ.get(ENV_BACKENDS, "all"),
        help=(
            "comma-separated backends to test: sqlite, psycopg, asyncpg, postgres (all "
            f"PostgreSQL ones) or all (the default; ${ENV_BACKENDS} overrides it)"
        ),
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "postgres: needs a PostgreSQL server "
        '(deselect with -m "not postgres" or --backends=sqlite)',
    )
    _selected_backends(config)  # a bad --backends fails before collection


def _selected_backends(config: pytest.Config) -> set[str]:
    names = {name.strip().lower() for name in config.getoption("backends").split(",")}
    names.discard("")
    choices = (*BACKENDS, "postgres", "all")
    unknown = names - set(choices)
    if unknown or not names:
        raise pytest.UsageError(
            f"--backends: unknown {', '.join(sorted(unknown)) or 'empty list'}; "
            f"choose from {', '.join(choices)}"
        )
    return {*BACKENDS, *FAMILIES} if "all" in names else names


def _backend_of(item: pytest.Item) -> str | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get("backend") if callspec is not None else None
    return value if isinstance(value, str) else None


@pytest.hookimpl(tryfirst=True)  # mark before the -m option deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    selected = _selected_backends(config)
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        backend = _backend_of(item)
        if backend is not None:
            family = "postgres" if is_postgres_backend(backend) else "sqlite"
            wanted = family in selected or any(backend.startswith(s) for s in selected)
        else:
            needs_pg = "pg_server" in item.fixturenames or item.get_closest_marker("postgres")
            family = "postgres" if needs_pg else None
            wanted = family is None or bool(selected - {"sqlite"})
        if family == "postgres" and item.get_closest_marker("postgres") is None:
            item.add_marker(pytest.mark.postgres)
        (keep if wanted else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def pytest_report_header(config: pytest.Config) -> str:
    backends = config.getoption("backends")
    if os.environ.get(ENV_URL):
        server = f"external, {PostgresServer.from_env().url(None).split('@')[-1]}"
    else:
        bindir = find_bindir()
        server = f"throwaway, from {bindir}" if bindir else "binaries not found"
    return f"sessionscope backends: {backends}; PostgreSQL: {server}"


# -- the PostgreSQL server ---------------------------------------------------------------


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """The PostgreSQL server of this run (skips, or fails under CI, if there is none)."""
    global _server
    server = PostgresServer.from_env()
    try:
        server.start()
    except PostgresUnavailable as exc:
        reason = str(exc)
    else:
        reason = None
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required when CI is set: {reason}", pytrace=False)
        pytest.skip(f"PostgreSQL is not available: {reason}")
    _server = server
    try:
        yield server
    finally:
        _server = None
        server.close()


def _unavailable(what: str, reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"{what} is required when CI is set: {reason}", pytrace=False)
    pytest.skip(f"{what} is not available: {reason}")


@pytest.fixture(scope="session")
def pg_replica(pg_server: PostgresServer) -> Iterator[PostgresServer]:
    """A streaming replica of ``pg_server`` (``pg_basebackup -R``), for the whole run.

    Tests that pause its replay resume it before they end (``paused_replica``)."""
    if not pg_server.managed:
        pytest.skip(f"the external server of {ENV_URL} cannot be given a replica here")
    try:
        replica = pg_server.start_replica()
    except PostgresUnavailable as exc:
        _unavailable("a PostgreSQL replica", str(exc))
    try:
        yield replica
    finally:
        replica.close()


@pytest.fixture(scope="session")
def pg_bouncer(pg_server: PostgresServer, pg_replica: PostgresServer) -> Iterator[PgBouncer]:
    """PgBouncer in transaction mode in front of ``pg_server`` (its database's name)
    and ``pg_replica`` (the same name + ``_replica``), for the whole run."""
    bouncer = PgBouncer({pg_server.dbname: pg_server, pg_server.dbname + "_replica": pg_replica})
    try:
        bouncer.start()
    except PostgresUnavailable as exc:
        _unavailable("PgBouncer", str(exc))
    try:
        yield bouncer
    finally:
        bouncer.close()


@pytest.fixture(autouse=True)
def _pg_server_running_after_test() -> Iterator[None]:
    """Start the server again if a test stopped it and did not start it again."""
    yield
    if _server is not None and _server.managed and not _server.running:
        _server.start()
