"""The fault-injection proxy of ``tests/faults.py``, proven against the real server.

Each fault runs for psycopg (sync, in a worker thread), psycopg async and asyncpg,
through plain SQLAlchemy engines with NullPool. What the client sees is pinned in
``LOST`` and ``REFUSED``: how the library tells "COMMIT outcome unknown" from a
retryable connection error depends on it. Note that a connection lost while COMMIT
was in flight looks exactly like one lost before it was sent: only the phase the
transaction was in tells them apart.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import psycopg
import pytest
from sqlalchemy import Connection, create_engine, exc, text
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from tests.faults import FaultProxy
from tests.pg_server import PostgresServer

TABLE = "faults_proxy_probe"
INSERT = text(f"INSERT INTO {TABLE} VALUES (1)")


@dataclass(frozen=True)
class Seen:
    """What a client is given when its connection breaks."""

    error: type[BaseException]  # the exact class raised to the caller
    driver_error: type[BaseException] | None  # exc.orig, or for asyncpg its __cause__
    invalidated: bool | None  # exc.connection_invalidated; None: not a SQLAlchemy error
    sqlstate: str | None  # exc.orig.sqlstate (asyncpg: made up by the client, not the server)
    message: str  # part of str(exc)


_PSYCOPG_LOST = Seen(
    exc.OperationalError,
    psycopg.OperationalError,
    True,
    None,
    "consuming input failed: server closed the connection unexpectedly",
)
_PSYCOPG_REFUSED = Seen(
    exc.OperationalError,
    psycopg.OperationalError,
    False,
    None,
    "connection failed: connection to server at",
)
# A connection lost during a statement: COMMIT forwarded or not, or cut_all().
LOST = {
    "psycopg": _PSYCOPG_LOST,
    "psycopg_async": _PSYCOPG_LOST,
    "asyncpg": Seen(
        exc.DBAPIError,  # not OperationalError
        asyncpg.ConnectionDoesNotExistError,
        True,
        "08003",
        "connection was closed in the middle of operation",
    ),
}
# A new connection closed by the server side before the startup completed.
REFUSED = {
    "psycopg": _PSYCOPG_REFUSED,
    "psycopg_async": _PSYCOPG_REFUSED,
    # With asyncpg's default sslmode=prefer the SSL negotiation fails with a bare
    # builtin ConnectionError that SQLAlchemy does not wrap. (With ssl=disable it
    # would be a DBAPIError, sqlstate 08003, connection_invalidated False.)
    "asyncpg": Seen(ConnectionError, None, None, None, "unexpected connection_lost() call"),
}


def assert_seen(error: BaseException, expected: Seen) -> None:
    orig = getattr(error, "orig", None)
    # SQLAlchemy's asyncpg adapter wraps asyncpg's error; psycopg's is used as it is.
    wrapped = orig is not None and type(orig).__module__.startswith("sqlalchemy")
    driver_error = orig.__cause__ if wrapped else orig
    assert type(error) is expected.error, repr(error)
    assert type(driver_error) is (expected.driver_error or type(None)), repr(driver_error)
    assert getattr(error, "connection_invalidated", None) is expected.invalidated
    assert getattr(orig, "sqlstate", None) == expected.sqlstate
    assert getattr(driver_error, "sqlstate", None) == expected.sqlstate
    assert expected.message in str(error)


class Client:
    """A NullPool engine of one driver that goes through the proxy."""

    def __init__(self, driver: str, url: str, **options: Any) -> None:
        self.driver = driver
        if driver == "psycopg":
            self.engine: Any = create_engine(url, poolclass=NullPool, **options)
        else:
            self.engine = create_async_engine(url, poolclass=NullPool, **options)

    async def run(self, work: Callable[[Connection], Any]) -> Any:
        """Open a connection, call ``work`` with it, close it.

        The sync driver runs in a worker thread; the async ones run ``work`` through
        ``run_sync``, the same code path as ``AsyncConnection.execute()``.
        """
        if self.driver == "psycopg":
            return await asyncio.to_thread(self._run_sync, work)
        async with self.engine.connect() as connection:
            return await connection.run_sync(work)

    def _run_sync(self, work: Callable[[Connection], Any]) -> Any:
        with self.engine.connect() as connection:
            return work(connection)

    async def dispose(self) -> None:
        if self.driver == "psycopg":
            self.engine.dispose()
        else:
            await self.engine.dispose()


def committed_rows(pg_server: PostgresServer) -> list[int]:
    with pg_server.connect() as connection:
        return [row[0] for row in connection.execute(f"SELECT id FROM {TABLE}")]


def assert_no_backends_soon(pg_server: PostgresServer) -> None:
    """No client backend left, once the observer's own have had a moment to exit.

    Closing a psycopg connection does not wait for its backend to go, so each look
    may see the backend of the one before; a single look that sees none is proof.
    """
    deadline = time.monotonic() + 5
    while (count := pg_server.backend_count()) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert count == 0, f"{count} backend(s) left"


@pytest.fixture
def table(pg_server: PostgresServer) -> Iterator[None]:
    with pg_server.connect() as connection:
        connection.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (id int)")
        connection.execute(f"TRUNCATE {TABLE}")
    yield
    with pg_server.connect() as connection:
        connection.execute(f"DROP TABLE {TABLE}")


@pytest.fixture
def proxy(pg_server: PostgresServer, table: None) -> Iterator[FaultProxy]:
    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        yield proxy
    assert not [t for t in threading.enumerate() if t.name == "FaultProxy"]
    assert pg_server.idle_in_transaction_count() == 0
    assert_no_backends_soon(pg_server)


@pytest.fixture(params=["psycopg", "psycopg_async", "asyncpg"])
def driver(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
async def client(
    driver: str, pg_server: PostgresServer, proxy: FaultProxy
) -> AsyncIterator[Client]:
    client = Client(
        driver, proxy.url(pg_server.url("asyncpg" if driver == "asyncpg" else "psycopg"))
    )
    yield client
    await client.dispose()


async def test_plain_traffic_passes(
    client: Client, proxy: FaultProxy, pg_server: PostgresServer
) -> None:
    def work(connection: Connection) -> None:
        assert connection.scalar(text("SELECT 1")) == 1
        connection.execute(INSERT)
        connection.commit()

    await client.run(work)
    assert committed_rows(pg_server) == [1]
    assert not proxy.fired.is_set()


async def test_cut_after_forwarding_commit_commits(
    client: Client, driver: str, proxy: FaultProxy, pg_server: PostgresServer
) -> None:
    def work(connection: Connection) -> None:
        connection.execute(INSERT)
        proxy.cut_after_forwarding(b"COMMIT")
        connection.commit()

    with pytest.raises(LOST[driver].error) as info:
        await client.run(work)
    assert_seen(info.value, LOST[driver])
    assert proxy.fired.is_set()
    await asyncio.to_thread(proxy.wait_server_done)
    # The server's CommandComplete "COMMIT" + ReadyForQuery, which the client never got.
    assert proxy.swallowed == b"C\x00\x00\x00\x0bCOMMIT\x00Z\x00\x00\x00\x05I"
    assert committed_rows(pg_server) == [1]


async def test_cut_before_forwarding_commit_rolls_back(
    driver: str, proxy: FaultProxy, pg_server: PostgresServer
) -> None:
    # Armed before the transaction begins: the marker is a word, so the
    # "BEGIN ISOLATION LEVEL READ COMMITTED" that this engine sends does not match.
    url = proxy.url(pg_server.url("asyncpg" if driver == "asyncpg" else "psycopg"))
    client = Client(driver, url, isolation_level="READ COMMITTED")
    proxy.cut_before_forwarding(b"COMMIT")

    def work(connection: Connection) -> None:
        connection.execute(INSERT)
        assert not proxy.fired.is_set()
        connection.commit()

    try:
        with pytest.raises(LOST[driver].error) as info:
            await client.run(work)
    finally:
        await client.dispose()
    assert_seen(info.value, LOST[driver])
    assert proxy.fired.is_set()
    await asyncio.to_thread(proxy.wait_server_done)
    assert proxy.swallowed == b""
    assert committed_rows(pg_server) == []


async def test_cut_all_mid_transaction(
    client: Client, driver: str, proxy: FaultProxy, pg_server: PostgresServer
) -> None:
    def work(connection: Connection) -> None:
        connection.execute(INSERT)
        proxy.cut_all()
        connection.execute(INSERT)

    with pytest.raises(LOST[driver].error) as info:
        await client.run(work)
    assert_seen(info.value, LOST[driver])
    assert not proxy.fired.is_set()  # only the one-shot faults fire
    await asyncio.to_thread(proxy.wait_server_done)
    assert committed_rows(pg_server) == []


async def test_refuse(
    client: Client, driver: str, proxy: FaultProxy, pg_server: PostgresServer
) -> None:
    proxy.refuse(True)
    with pytest.raises(REFUSED[driver].error) as info:
        await client.run(lambda connection: None)
    assert_seen(info.value, REFUSED[driver])
    assert_no_backends_soon(pg_server)

    proxy.refuse(False)
    assert await client.run(lambda connection: connection.scalar(text("SELECT 1"))) == 1


def test_messages_split_across_reads_are_framed(pg_server: PostgresServer, table: None) -> None:
    """A raw protocol session sent a few bytes at a time; COMMIT split in three."""

    def message(kind: bytes, body: bytes) -> bytes:
        return kind + (len(body) + 4).to_bytes(4) + body

    def query(sql: str) -> bytes:
        return message(b"Q", sql.encode() + b"\0")

    def read_replies(sock: socket.socket, count: int = 1) -> bytes:
        data = b""
        while data.count(b"Z\x00\x00\x00\x05") < count:  # ReadyForQuery ends each reply
            chunk = sock.recv(65536)
            assert chunk, f"closed early after {data!r}"
            data += chunk
        return data

    def send_in_pieces(sock: socket.socket, data: bytes, *cuts: int) -> None:
        for start, end in zip((0, *cuts), (*cuts, len(data)), strict=True):
            sock.sendall(data[start:end])
            time.sleep(0.01)  # TCP_NODELAY + a pause: separate reads on the proxy

    ssl_request = (8).to_bytes(4) + (80877103).to_bytes(4)
    params = f"user\0{pg_server.user}\0database\0{pg_server.dbname}\0\0".encode()
    startup = (len(params) + 8).to_bytes(4) + (196608).to_bytes(4) + params
    with FaultProxy(pg_server.host, pg_server.port) as proxy:
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            send_in_pieces(sock, ssl_request, 3)
            assert sock.recv(1) == b"N"  # answered by the proxy itself
            send_in_pieces(sock, startup, 2, 7, 20)
            read_replies(sock)  # trust authentication: straight to ReadyForQuery
            send_in_pieces(sock, query("BEGIN") + query(f"INSERT INTO {TABLE} VALUES (1)"), 19)
            assert b"INSERT 0 1" in read_replies(sock, 2)
            proxy.cut_after_forwarding(b"COMMIT")
            send_in_pieces(sock, query("COMMIT"), 1, 6)
            assert sock.recv(65536) == b""  # closed, no reply
            assert proxy.fired.is_set()
            proxy.wait_server_done()
    assert committed_rows(pg_server) == [1]
    assert_no_backends_soon(pg_server)
