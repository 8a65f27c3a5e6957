"""A throwaway PgBouncer in transaction mode, in front of the test servers.

Debian's ``pgbouncer`` program, started in the foreground (as the ``postgres``
user when we are root: PgBouncer refuses to run as root) on a free loopback
port, with trust authentication and one pooled database per server it fronts,
named like the server's database with a suffix (``sessionscope_test``,
``sessionscope_test_replica``, ...). ``close()`` (also run at interpreter exit)
stops it and removes its directory. Standard library only.
"""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from tests.pg_server import (
    SERVER_OS_USER,
    SERVER_ROLE,
    PostgresServer,
    PostgresUnavailable,
    _free_port,
)

__all__ = ["PgBouncer", "find_pgbouncer"]


def find_pgbouncer() -> str | None:
    """The ``pgbouncer`` program (Debian installs it in /usr/sbin), or None."""
    return shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/bin")


class PgBouncer:
    """PgBouncer in transaction mode, pooling ``servers`` by name."""

    def __init__(self, servers: dict[str, PostgresServer], ignored: tuple[str, ...] = ()) -> None:
        self.servers = servers
        # Startup parameters it ignores (passes over) rather than refuses.
        self.ignored = ("extra_float_digits", *ignored)
        self.host = "127.0.0.1"
        self.port = 0
        self.user = SERVER_OS_USER
        self.basedir: Path | None = None
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, name: str, driver: str | None = "psycopg") -> str:
        """A SQLAlchemy URL for the pooled database ``name`` (driver None: a libpq URL)."""
        scheme = "postgresql" if driver is None else f"postgresql+{driver}"
        return f"{scheme}://{quote(self.user, safe='')}@{self.host}:{self.port}/{name}"

    def start(self) -> None:
        program = find_pgbouncer()
        for server in self.servers.values():
            if server.managed and not server.in_recovery():
                with server.connect() as connection:
                    connection.execute(
                        f"DO $$ BEGIN CREATE ROLE {SERVER_ROLE} SUPERUSER LOGIN;"
                        " EXCEPTION WHEN duplicate_object THEN NULL; END $$"
                    )
        if program is None:
            raise PostgresUnavailable(
                "pgbouncer not found: install it (Debian: apt-get install pgbouncer)"
            )
        parent = None
        if os.geteuid() == 0:
            parent = "/tmp"
        self.basedir = Path(tempfile.mkdtemp(prefix="sessionscope-pgbouncer-", dir=parent))
        atexit.register(self.close)
        self.port = _free_port()
        # Each database also as "<name>_small": two server connections for every
        # client, so that consecutive transactions of one client move between them.
        # Server connections log in as SERVER_ROLE: the tests that count a database's
        # clients leave PgBouncer's idle ones out.
        databases = "".join(
            f"{name}{suffix} = host={server.host} port={server.port} dbname={server.dbname}"
            f" user={SERVER_ROLE}{size}\n"
            for name, server in self.servers.items()
            for suffix, size in (("", ""), ("_small", " pool_size=2"))
        )
        (self.basedir / "users.txt").write_text(f'"{self.user}" ""\n"{SERVER_ROLE}" ""\n')
        (self.basedir / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{databases}"
            "[pgbouncer]\n"
            f"listen_addr = {self.host}\n"
            f"listen_port = {self.port}\n"
            f"unix_socket_dir = {self.basedir}\n"
            "auth_type = trust\n"
            f"auth_file = {self.basedir / 'users.txt'}\n"
            "pool_mode = transaction\n"
            "default_pool_size = 20\n"
            "max_client_conn = 500\n"
            # What SQLAlchemy's drivers send at startup; anything else is refused.
            f"ignore_startup_parameters = {','.join(self.ignored)}\n"
            f"logfile = {self.basedir / 'pgbouncer.log'}\n"
            "server_reset_query = DISCARD ALL\n"
        )
        argv = [program, str(self.basedir / "pgbouncer.ini")]
        if os.geteuid() == 0:
            entry = pwd.getpwnam(SERVER_OS_USER)
            os.chown(self.basedir, entry.pw_uid, entry.pw_gid)
            for child in self.basedir.iterdir():
                os.chown(child, entry.pw_uid, entry.pw_gid)
            argv = ["runuser", "-u", SERVER_OS_USER, "--", *argv]
        self.process = subprocess.Popen(
            argv, cwd="/", stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    log = self._log_tail()
                    self.close()
                    raise PostgresUnavailable(f"pgbouncer did not start:\n{log}") from None
                time.sleep(0.05)

    def _log_tail(self) -> str:
        assert self.basedir is not None
        try:
            return "\n".join((self.basedir / "pgbouncer.log").read_text().splitlines()[-20:])
        except OSError:
            return "(no log)"

    def close(self) -> None:
        atexit.unregister(self.close)
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        basedir, self.basedir = self.basedir, None
        if basedir is not None:
            shutil.rmtree(basedir, ignore_errors=True)

    def __enter__(self) -> PgBouncer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
