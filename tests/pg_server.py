"""A throwaway PostgreSQL server for the test suite.

``PostgresServer.from_env()`` gives one of two kinds of server:

* **managed** (the default): a fresh cluster made with the local PostgreSQL binaries
  (``initdb``/``pg_ctl``) in a temporary directory, listening on a free loopback TCP
  port, tuned for speed rather than durability, with an empty database
  ``sessionscope_test``. When the tests run as root, every server program runs as the
  unprivileged ``postgres`` user, as PostgreSQL requires. ``stop()``, ``start()`` and
  ``restart()`` let fault tests take the server down and bring it back on the same
  port; ``close()`` (also run at interpreter exit) kills it and removes the directory.
* **external**: when ``SESSIONSCOPE_TEST_PG_URL`` is set to a plain libpq URL
  (``postgresql://user:password@host:port/dbname``), that server is used as it is and
  nothing is started; it cannot be stopped or restarted.

The helpers ``backend_count()``, ``idle_in_transaction_count()`` and
``terminate_backends()`` look at the other client connections to the test database
(they need ``psycopg``, imported only when they are called).

This module needs nothing but the standard library, so it can be used outside pytest::

    with PostgresServer.from_env() as pg:
        print(pg.url("psycopg"))
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

ENV_URL = "SESSIONSCOPE_TEST_PG_URL"
ENV_BINDIR = "SESSIONSCOPE_TEST_PG_BINDIR"
DEFAULT_DBNAME = "sessionscope_test"
SERVER_OS_USER = "postgres"
# The role PgBouncer's server connections log in as (tests/pg_bouncer.py): not counted
# among a test database's other clients, which PgBouncer keeps open while idle.
SERVER_ROLE = "sessionscope_pgbouncer"

# Durability is worthless in a throwaway cluster; speed and quick fault detection are not.
SETTINGS: dict[str, str] = {
    "listen_addresses": "'127.0.0.1'",
    "max_connections": "200",
    "max_prepared_transactions": "0",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    # A streaming replica (start_replica()) needs the WAL of a replica-level server.
    "wal_level": "replica",
    "max_wal_senders": "10",
    "wal_sender_timeout": "5s",
    "wal_receiver_status_interval": "1s",
    "checkpoint_timeout": "1h",
    "max_wal_size": "1GB",
    "autovacuum": "off",
    "jit": "off",
    "shared_buffers": "64MB",
    "deadlock_timeout": "100ms",  # deadlock tests learn their fate in 0.1 s, not 1 s
    "timezone": "'UTC'",
}


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL server could be had (binaries missing, or it would not start)."""


class UnmanagedServerError(RuntimeError):
    """The operation needs a server this module started, not an external one."""


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``pg_ctl`` and ``postgres``, or None.

    Looks only at ``$SESSIONSCOPE_TEST_PG_BINDIR`` if it is set, else at
    ``pg_config --bindir``, the newest ``/usr/lib/postgresql/*/bin`` (Debian, Ubuntu)
    and ``PATH``, in that order.
    """
    explicit = os.environ.get(ENV_BINDIR)
    candidates = [Path(explicit)] if explicit else _bindir_candidates()
    for path in candidates:
        if all((path / name).is_file() for name in ("initdb", "pg_ctl", "postgres")):
            return path
    return None


def _bindir_candidates() -> list[Path]:
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            candidates.append(Path(out.stdout.strip()))

    def version(path: Path) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", path.parent.name))

    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), key=version, reverse=True)
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(initdb).resolve().parent)
    return candidates


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _world_traversable_tempdir() -> str:
    """The temporary directory, or /tmp if the server user could not reach into it.

    (``$TMPDIR`` may point into a 0700 home directory.)
    """
    tmp = Path(tempfile.gettempdir()).resolve()
    reachable = all(p.stat().st_mode & 0o001 for p in (tmp, *tmp.parents))
    return str(tmp) if reachable else "/tmp"


class PostgresServer:
    """A PostgreSQL server for tests: managed (started here) or external (from a URL)."""

    def __init__(
        self,
        *,
        dbname: str = DEFAULT_DBNAME,
        bindir: Path | None = None,
        external_url: str | None = None,
    ) -> None:
        self.dbname = dbname
        self.user = SERVER_OS_USER
        self.password: str | None = None
        self.host = "127.0.0.1"
        self.port = 0
        self.bindir = bindir
        self.managed = external_url is None
        self.basedir: Path | None = None
        self.running = False
        if external_url is not None:
            self._parse_url(external_url)

    @classmethod
    def from_env(cls, *, dbname: str = DEFAULT_DBNAME) -> PostgresServer:
        """The external server of ``$SESSIONSCOPE_TEST_PG_URL``, else a managed one."""
        url = os.environ.get(ENV_URL, "").strip()
        return cls(external_url=url) if url else cls(dbname=dbname)

    def _parse_url(self, url: str) -> None:
        parts = urlsplit(url)
        if not re.fullmatch(r"postgres(ql)?(\+\w+)?", parts.scheme):
            raise ValueError(f"{ENV_URL} must be a postgresql:// URL, not {url!r}")
        self.host = parts.hostname or "127.0.0.1"
        self.port = parts.port or 5432
        self.user = unquote(parts.username) if parts.username else SERVER_OS_USER
        self.password = unquote(parts.password) if parts.password is not None else None
        self.dbname = unquote(parts.path.lstrip("/")) or self.dbname

    # -- addresses ---------------------------------------------------------------------

    def url(self, driver: str | None = "psycopg") -> str:
        """A SQLAlchemy URL (``postgresql+DRIVER://...``); driver None gives a libpq URL."""
        scheme = "postgresql" if driver is None else f"postgresql+{driver}"
        auth = quote(self.user, safe="")
        if self.password is not None:
            auth += ":" + quote(self.password, safe="")
        return f"{scheme}://{auth}@{self.host}:{self.port}/{quote(self.dbname, safe='')}"

    @property
    def conninfo(self) -> str:
        """A libpq URL, for ``psycopg.connect()`` and ``asyncpg.connect()``."""
        return self.url(None)

    def __repr__(self) -> str:
        kind = "managed" if self.managed else "external"
        return f"<PostgresServer {kind} {self.url(None)} running={self.running}>"

    # -- life cycle --------------------------------------------------------------------

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def start(self) -> None:
        """Start the server (making the cluster first, if need be) and wait until ready."""
        if not self.managed:
            self._wait_for_port(timeout=10)
            self.running = True
            return
        if self.running:
            return
        if self.basedir is None:
            try:
                self._init_cluster()
                self._pg_ctl("start", "-w", "-t", "60", "-l", str(self._path("server.log")))
                self.running = True
                createdb = self._require_bindir() / "createdb"
                self._run(
                    [createdb if createdb.is_file() else "createdb", "-h", self.host,
                     "-p", str(self.port), "-U", self.user, self.dbname],
                    as_server_user=False,
                )  # fmt: skip
            except BaseException:
                self.close()
                raise
        else:
            self._pg_ctl("start", "-w", "-t", "60", "-l", str(self._path("server.log")))
            self.running = True

    def stop(self, mode: str = "fast") -> None:
        """Stop the server; ``mode`` is pg_ctl's: smart, fast or immediate (a crash)."""
        self._require_managed("stop")
        if self.running:
            self._pg_ctl("stop", "-w", "-t", "60", "-m", mode)
            self.running = False

    def restart(self, mode: str = "fast") -> None:
        """Stop and start again on the same port; existing connections are broken."""
        self._require_managed("restart")
        self.stop(mode)
        self.start()

    def close(self) -> None:
        """Kill a managed server and delete its directory (safe to call more than once)."""
        atexit.unregister(self.close)
        self.running = False
        basedir, self.basedir = self.basedir, None
        if not self.managed or basedir is None:
            return
        data = basedir / "data"
        if (data / "postmaster.pid").exists():
            try:
                self._run([self._tool("pg_ctl"), "-D", data, "stop", "-m", "immediate"])
            except PostgresUnavailable:
                _kill_postmaster(data)
        shutil.rmtree(basedir, ignore_errors=True)

    def _require_managed(self, what: str) -> None:
        if not self.managed:
            raise UnmanagedServerError(
                f"cannot {what} the external PostgreSQL server given by {ENV_URL}; "
                "unset it to let the tests start their own"
            )

    # -- a streaming replica ------------------------------------------------------------

    def start_replica(self) -> PostgresServer:
        """A new streaming replica of this managed server, started and accepting reads.

        Made with ``pg_basebackup -R`` (which writes the standby's connection to this
        server) on a port of its own; the caller closes it. ``promote()`` makes it a
        primary; ``pause_replay()``/``resume_replay()`` make it lag on demand.
        """
        self._require_managed("replicate")
        replica = PostgresServer(dbname=self.dbname, bindir=self.bindir)
        replica._make_basedir()
        try:
            replica._run(
                [replica._tool("pg_basebackup"), "-h", self.host, "-p", str(self.port),
                 "-U", self.user, "-D", replica._path("data"), "-R", "-X", "stream",
                 "--no-sync", "--checkpoint=fast"]
            )  # fmt: skip
            replica._configure({"hot_standby": "on", "hot_standby_feedback": "on"})
            replica.start()
        except BaseException:
            replica.close()
            raise
        return replica

    def promote(self) -> None:
        """Make this replica a primary (``pg_ctl promote``), waiting until it accepts writes."""
        self._require_managed("promote")
        self._pg_ctl("promote", "-w", "-t", "60")

    def in_recovery(self) -> bool:
        with self.connect() as conn:
            return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])

    def pause_replay(self) -> None:
        """Stop applying the primary's WAL (it is still received): the replica lags."""
        with self.connect() as conn:
            conn.execute("SELECT pg_wal_replay_pause()")

    def resume_replay(self) -> None:
        with self.connect() as conn:
            conn.execute("SELECT pg_wal_replay_resume()")

    def current_lsn(self) -> str:
        """The primary's WAL position after every commit so far."""
        with self.connect() as conn:
            return str(conn.execute("SELECT pg_current_wal_insert_lsn()").fetchone()[0])

    def wait_replayed(self, lsn: str, timeout: float = 30) -> None:
        """Wait until this replica has replayed the primary's WAL up to ``lsn``."""
        deadline = time.monotonic() + timeout
        with self.connect() as conn:
            while True:
                done = conn.execute(
                    "SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", (lsn,)
                ).fetchone()[0]
                if done:
                    return
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the replica on port {self.port} did not replay {lsn}")
                time.sleep(0.02)

    # -- the managed cluster ----------------------------------------------------------

    def _make_basedir(self) -> None:
        """The server's directory (owned by the server user when we are root) and port."""
        if self.bindir is None:
            self.bindir = find_bindir()
        if self.bindir is None:
            raise PostgresUnavailable(
                "PostgreSQL server binaries (initdb, pg_ctl, postgres) not found: install "
                f"PostgreSQL (Debian: apt-get install postgresql), set {ENV_BINDIR}, or set "
                f"{ENV_URL} to an existing server"
            )
        parent = None
        owner: tuple[int, int] | None = None
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            try:
                entry = pwd.getpwnam(SERVER_OS_USER)
            except KeyError:
                raise PostgresUnavailable(
                    f"running as root, but there is no {SERVER_OS_USER!r} OS user "
                    "to run PostgreSQL as"
                ) from None
            owner = (entry.pw_uid, entry.pw_gid)
            parent = _world_traversable_tempdir()
        self.basedir = Path(tempfile.mkdtemp(prefix="sessionscope-pg-", dir=parent))
        atexit.register(self.close)
        if owner is not None:
            os.chown(self.basedir, *owner)
        self.port = _free_port()

    def _configure(self, settings: dict[str, str]) -> None:
        settings = {
            **settings,
            "port": str(self.port),
            "unix_socket_directories": f"'{self.basedir}'",
        }
        with self._path("data", "postgresql.conf").open("a") as conf:
            conf.write("\n# sessionscope test settings\n")
            conf.writelines(f"{key} = {value}\n" for key, value in settings.items())

    def _init_cluster(self) -> None:
        self._make_basedir()
        self._run(
            [self._tool("initdb"), "-D", self._path("data"), "-U", self.user, "--auth=trust",
             "--encoding=UTF8", "--locale=C", "--no-sync"]
        )  # fmt: skip
        self._configure(SETTINGS)

    def _pg_ctl(self, *args: str) -> None:
        try:
            self._run([self._tool("pg_ctl"), "-D", self._path("data"), *args])
        except PostgresUnavailable as exc:
            raise PostgresUnavailable(f"{exc}\n{self._log_tail()}") from None

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self._path("server.log").read_text(errors="replace")
        except OSError:
            return "(no server log)"
        return "server log (last lines):\n" + "\n".join(text.splitlines()[-lines:])

    def _require_bindir(self) -> Path:
        assert self.bindir is not None
        return self.bindir

    def _tool(self, name: str) -> Path:
        return self._require_bindir() / name

    def _path(self, *names: str) -> Path:
        assert self.basedir is not None, "the cluster has not been created"
        return self.basedir.joinpath(*names)

    def _run(self, command: list[Any], *, as_server_user: bool = True) -> None:
        """Run a program, as the ``postgres`` user when we are root; raise on failure."""
        argv = [str(arg) for arg in command]
        if as_server_user and os.geteuid() == 0:
            if shutil.which("runuser"):
                argv = ["runuser", "-u", SERVER_OS_USER, "--", *argv]
            else:
                argv = ["setpriv", f"--reuid={SERVER_OS_USER}", f"--regid={SERVER_OS_USER}",
                        "--init-groups", "--", *argv]  # fmt: skip
        # PG* variables of the caller (PGHOST, PGDATA, ...) must not redirect our tools.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        try:
            done = subprocess.run(
                argv,
                cwd="/",  # a directory the server user can enter
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=120,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise PostgresUnavailable(f"{' '.join(argv)}: {exc}") from None
        if done.returncode != 0:
            raise PostgresUnavailable(
                f"{' '.join(argv)} failed with exit code {done.returncode}:\n"
                f"{done.stdout}{done.stderr}".rstrip()
            )

    def _wait_for_port(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError as exc:
                if time.monotonic() > deadline:
                    raise PostgresUnavailable(
                        f"PostgreSQL at {self.host}:{self.port} ({ENV_URL}) is not reachable: {exc}"
                    ) from None
                time.sleep(0.2)

    # -- looking at other connections (needs psycopg) --------------------------------------

    def connect(self) -> Any:
        """A new autocommit ``psycopg.Connection`` to the test database."""
        import psycopg

        return psycopg.connect(self.conninfo, autocommit=True, connect_timeout=10)

    def _other_backends(
        self, what: str, condition: str = "true", *, poolers: bool = False
    ) -> list[Any]:
        """Other client backends of the test database; PgBouncer's only if ``poolers``."""
        if not poolers:
            condition = f"usename <> '{SERVER_ROLE}' AND ({condition})"
        with self.connect() as conn:
            rows = conn.execute(
                f"SELECT {what} FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                f" AND backend_type = 'client backend' AND ({condition})"
            ).fetchall()
        return [row[0] for row in rows]

    def backend_count(self) -> int:
        """How many other client connections the test database has (PgBouncer's idle
        server connections left out)."""
        return len(self._other_backends("pid"))

    def idle_in_transaction_count(self) -> int:
        """How many other connections sit idle inside a transaction (or an aborted one),
        PgBouncer's included."""
        return len(self._other_backends("pid", "state LIKE 'idle in transaction%'", poolers=True))

    def terminate_backends(self, timeout: float = 10) -> int:
        """``pg_terminate_backend()`` every other client of the test database.

        Waits until they are gone and returns how many were terminated.
        """
        killed = self._other_backends("pg_terminate_backend(pid)", poolers=True)
        deadline = time.monotonic() + timeout
        while self.backend_count() and time.monotonic() < deadline:
            time.sleep(0.05)
        return sum(1 for ok in killed if ok)


def _kill_postmaster(data: Path) -> None:
    """Last resort when ``pg_ctl stop`` failed: SIGQUIT, then SIGKILL, the postmaster."""
    try:
        pid = int(data.joinpath("postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return
    for sig in (signal.SIGQUIT, signal.SIGKILL):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        time.sleep(1)
