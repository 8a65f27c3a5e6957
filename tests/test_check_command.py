"""``python -m sessionscope check``, run in a subprocess as a user would run it."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url

import sessionscope
from tests.pg_bouncer import PgBouncer
from tests.pg_server import PostgresServer

ROOT = Path(__file__).parent.parent
# The child imports sessionscope from where this run does (src/, or site-packages).
IMPORT_ROOT = str(Path(sessionscope.__file__).parent.parent)
PASSWORD = "s3cret-pw"
KEYS = {
    "url", "flavour", "dialect", "driver", "server_version", "latency_ms", "savepoints",
    "isolation_level", "pool", "server", "standby", "pooler", "pooler_needs", "ok", "error",
}  # fmt: skip


def check(*args: str, env_url: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "SESSIONSCOPE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [IMPORT_ROOT, env.get("PYTHONPATH")]))
    if env_url is not None:
        env["SESSIONSCOPE_URL"] = env_url
    return subprocess.run(
        [sys.executable, "-m", "sessionscope", "check", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def healthy_report(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    report = json.loads(result.stdout)
    assert set(report) == KEYS
    assert report["ok"] is True and report["error"] is None
    # Not checked on a standby (they need a write).
    assert report["savepoints"] is (None if report["standby"] else True)
    assert set(report["latency_ms"]) == {"median", "min", "max"}
    assert 0 < report["latency_ms"]["min"] <= report["latency_ms"]["median"]
    assert report["latency_ms"]["median"] <= report["latency_ms"]["max"]
    assert report["pool"] == {"size": 5, "checked_in": 1, "checked_out": 0, "overflow": 0}
    assert str(report["server_version"])[0].isdigit()
    return dict(report)


def secret_url(pg_server: PostgresServer, driver: str, database: str | None = None) -> str:
    """The test server's URL with a password in it (trust auth accepts any)."""
    url = make_url(pg_server.url(driver))
    url = url.set(password=url.password or PASSWORD, database=database or url.database)
    return url.render_as_string(hide_password=False)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- SQLite ------------------------------------------------------------------------------


@pytest.fixture
def sqlite_file(tmp_path: Path) -> Path:
    path = tmp_path / "check.db"
    sqlite3.connect(path).close()
    return path


@pytest.mark.parametrize(
    ("backend", "flavour", "driver"),
    [("sqlite", "sync", "pysqlite"), ("sqlite+aiosqlite", "async", "aiosqlite")],
)
def test_sqlite_file(sqlite_file: Path, backend: str, flavour: str, driver: str) -> None:
    url = f"{backend}:///{sqlite_file}"
    report = healthy_report(check("--json", url))
    assert report["url"] == url
    assert (report["flavour"], report["dialect"], report["driver"]) == (flavour, "sqlite", driver)
    assert report["isolation_level"] == "SERIALIZABLE"
    # The check left nothing behind. (sqlite3's own "with" does not close.)
    with contextlib.closing(sqlite3.connect(sqlite_file)) as conn:
        assert conn.execute("SELECT count(*) FROM sqlite_master").fetchone() == (0,)

    human = check(url)
    assert human.returncode == 0, human.stderr
    assert f"flavour          {flavour}" in human.stdout
    assert "savepoints       work" in human.stdout
    assert human.stdout.rstrip().endswith("status           OK")


def test_a_missing_sqlite_file_fails_and_is_not_created(tmp_path: Path) -> None:
    result = check(f"sqlite:///{tmp_path / 'missing.db'}")
    assert result.returncode == 1
    assert "error: no SQLite database file" in result.stderr  # our message, no class name
    assert not (tmp_path / "missing.db").exists()


def test_in_memory_sqlite_names_its_pool() -> None:
    result = check("sqlite://")
    assert result.returncode == 0, result.stderr
    assert "pool             class StaticPool" in result.stdout


@pytest.mark.skipif(
    importlib.util.find_spec("pymysql") is not None, reason="needs a driver that is missing"
)
def test_a_missing_driver_says_what_to_install() -> None:
    result = check("mysql+pymysql://u@127.0.0.1:1/db")
    assert result.returncode != 0
    assert "No module named 'pymysql'; install the driver" in result.stderr


# -- PostgreSQL --------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "flavour"), [("psycopg", "sync"), ("asyncpg", "async")])
def test_postgres(pg_server: PostgresServer, backend: str, flavour: str) -> None:
    url = secret_url(pg_server, backend)
    password = make_url(url).password
    assert password
    for result in (check("--json", url), check("--json", env_url=url)):
        assert password not in result.stdout + result.stderr
        report = healthy_report(result)
        assert report["url"] == make_url(url).render_as_string(hide_password=True)
        assert "***" in str(report["url"])
        assert (report["flavour"], report["dialect"], report["driver"]) == (
            flavour,
            "postgresql",
            backend,
        )
        assert report["isolation_level"] == "READ COMMITTED"
    for result in (check(url), check(env_url=url)):
        assert result.returncode == 0, result.stderr
        assert password not in result.stdout + result.stderr
        assert "savepoints       work" in result.stdout


@pytest.mark.parametrize(("backend", "flavour"), [("psycopg", "sync"), ("asyncpg", "async")])
def test_pgbouncer_is_named_with_what_the_driver_needs(
    pg_server: PostgresServer, pg_bouncer: PgBouncer, backend: str, flavour: str
) -> None:
    report = healthy_report(check("--json", pg_bouncer.url(pg_server.dbname, backend)))
    assert report["pooler"] == "PgBouncer"
    assert report["flavour"] == flavour
    needs = {"psycopg": "'prepare_threshold': None", "asyncpg": "'statement_cache_size': 0"}
    assert needs[backend] in report["pooler_needs"]
    human = check(pg_bouncer.url(pg_server.dbname, backend))
    assert human.returncode == 0, human.stderr
    assert "pooler           PgBouncer: in transaction mode" in human.stdout
    # Straight to the server: no pooler.
    assert healthy_report(check("--json", pg_server.url(backend)))["pooler"] is None


@pytest.mark.parametrize("backend", ["psycopg", "asyncpg"])
def test_a_replica_is_named_a_standby_and_passes(
    pg_server: PostgresServer, pg_replica: PostgresServer, backend: str
) -> None:
    report = healthy_report(check("--json", pg_replica.url(backend)))
    assert report["standby"] is True and report["savepoints"] is None
    assert report["server"] == f"127.0.0.1:{pg_replica.port}"
    assert healthy_report(check("--json", pg_server.url(backend)))["standby"] is False
    human = check(pg_replica.url(backend))
    assert human.returncode == 0, human.stderr
    assert "standby          yes: a replica, read-only" in human.stdout
    # A multi-host URL: the server that answered is named.
    hosts = f"host=127.0.0.1:{pg_replica.port}&host=127.0.0.1:{pg_server.port}"
    multi = f"postgresql+{backend}://postgres@/{pg_server.dbname}?{hosts}"
    answered = healthy_report(check("--json", multi + "&target_session_attrs=read-write"))
    assert answered["server"] == f"127.0.0.1:{pg_server.port}"


@pytest.mark.parametrize("backend", ["psycopg", "asyncpg"])
def test_a_driver_error_quoting_the_password_is_scrubbed(
    pg_server: PostgresServer, backend: str
) -> None:
    url = secret_url(pg_server, backend)
    password = make_url(url).password
    assert password
    result = check("--json", secret_url(pg_server, backend, database=password))
    assert result.returncode == 1
    assert password not in result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] is False
    assert 'database "***" does not exist' in report["error"]


# -- failures ----------------------------------------------------------------------------


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_an_unreachable_server_fails_fast(driver: str) -> None:
    url = f"postgresql+{driver}://postgres:{PASSWORD}@127.0.0.1:{closed_port()}/db"
    for args in (["--json", url], [url]):
        started = time.monotonic()
        result = check(*args)
        assert time.monotonic() - started < 10
        assert result.returncode == 1, result.stdout + result.stderr
        assert PASSWORD not in result.stdout + result.stderr
        assert "error:" in result.stderr
    report = json.loads(check("--json", url).stdout)
    assert report["ok"] is False and report["error"]
    assert report["url"].startswith("postgresql+") and ":***@" in report["url"]


@pytest.mark.parametrize("driver", ["psycopg", "asyncpg"])
def test_a_server_that_never_answers_times_out(driver: str) -> None:
    with socket.socket() as listener:  # accepts connections (the kernel does), never speaks
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        url = f"postgresql+{driver}://postgres:{PASSWORD}@127.0.0.1:{port}/db"
        started = time.monotonic()
        result = check("--connect-timeout", "2", url)
    assert result.returncode == 1, result.stdout + result.stderr
    assert time.monotonic() - started < 10
    assert PASSWORD not in result.stdout + result.stderr


def test_no_url_and_no_environment_variable() -> None:
    result = check()
    assert result.returncode == 2
    assert "SESSIONSCOPE_URL" in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("not a url", "not a valid database URL"),
        (f"postgresql://u:{PASSWORD}@host:port/db", "not a valid database URL"),
        (f"postgresql+nodriver://u:{PASSWORD}@host/db", "'postgresql+nodriver'"),
        (f"nodialect://u:{PASSWORD}@host/db", "'nodialect'"),
    ],
)
def test_a_bad_url(url: str, message: str) -> None:
    for result in (check(url), check("--json", url), check(env_url=url)):
        assert result.returncode == 2
        assert message in result.stderr
        assert PASSWORD not in result.stdout + result.stderr


def test_argparse_usage_errors_exit_2() -> None:
    result = check("--no-such-option", "sqlite://")
    assert result.returncode == 2
    assert "usage:" in result.stderr
