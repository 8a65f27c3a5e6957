"""Primary failover (README "Replicas, poolers and failover"): a multi-host URL with
``target_session_attrs=read-write`` finds the new primary after a real promotion,
and the errors of the failover are retried as lost connections."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from sessionscope import ConfigurationError, SessionConfig
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import IS_ASYNC
from sessionscope._transient import sqlstate_of
from tests.pg_server import PostgresServer, PostgresUnavailable

POSTGRES_BACKENDS = ("psycopg", "asyncpg") if IS_ASYNC else ("psycopg",)
pytestmark = [pytest.mark.postgres, pytest.mark.parametrize("backend", POSTGRES_BACKENDS)]

PORT = text("SELECT current_setting('port')::int")


class Cluster:
    """A primary and its streaming replica, of this test alone: promotion ends them."""

    def __init__(self) -> None:
        self.primary = PostgresServer()
        self.primary.start()
        self.replica = self.primary.start_replica()
        with self.primary.connect() as connection:
            connection.execute("CREATE TABLE moves (id serial PRIMARY KEY, note text)")
        self.caught_up()

    def url(self, driver: str) -> str:
        """SQLAlchemy's multi-host form: both servers, the one taking writes wins."""
        hosts = "&".join(
            "host=%s:%d" % (server.host, server.port) for server in (self.primary, self.replica)
        )
        return "postgresql+%s://%s@/%s?%s&target_session_attrs=read-write" % (
            driver,
            self.primary.user,
            self.primary.dbname,
            hosts,
        )

    def caught_up(self) -> None:
        self.replica.wait_replayed(self.primary.current_lsn())

    def fence_primary(self) -> None:
        """What a failover manager does to an old primary it cannot stop: no more writes.
        Returns once the server has reloaded (its backends get the signal with it)."""
        with self.primary.connect() as connection:
            connection.execute("ALTER SYSTEM SET default_transaction_read_only = on")
            connection.execute("SELECT pg_reload_conf()")
        deadline = time.monotonic() + 30
        while True:
            with self.primary.connect() as connection:
                if connection.execute("SHOW default_transaction_read_only").fetchone()[0] == "on":
                    break
            assert time.monotonic() < deadline, "the primary did not reload its settings"
            time.sleep(0.02)
        time.sleep(0.2)  # the pooled connections' backends handle the signal too

    def wait_for_receivers(self, condition: str) -> None:
        """Wait until ``condition`` (a query of the replica's WAL receivers) holds."""
        deadline = time.monotonic() + 30
        with self.replica.connect() as connection:
            while not connection.execute(condition).fetchone()[0]:
                assert time.monotonic() < deadline, "not so after 30 s: %s" % condition
                time.sleep(0.05)

    def notes(self) -> list[str]:
        with self.replica.connect() as connection:
            return [row[0] for row in connection.execute("SELECT note FROM moves ORDER BY id")]

    def close(self) -> None:
        self.replica.close()
        self.primary.close()


@pytest.fixture
def cluster(pg_server: PostgresServer) -> Iterator[Cluster]:
    try:
        cluster = Cluster()
    except PostgresUnavailable as exc:
        pytest.fail("could not start a primary and a replica: %s" % exc)
    try:
        yield cluster
    finally:
        cluster.close()


def manager_of(cluster: Cluster, backend: str) -> AsyncSessionManager:
    config = SessionConfig(retry_attempts=20, retry_delay=0.02, retry_max_delay=0.3)
    return AsyncSessionManager(cluster.url(backend), config=config)


async def assert_write_refused_once(manager: AsyncSessionManager, read_only: bool) -> None:
    """A write the server refuses as a statement's error (25006), not retried as a
    failover's; the manager disposed."""

    @manager.with_session(read_only=read_only)
    async def write(session: Any) -> None:
        await session.execute(text("INSERT INTO moves (note) VALUES ('nope')"))

    try:
        with pytest.raises(DBAPIError) as raised:
            await write()
        assert sqlstate_of(raised.value) == "25006"
        assert manager.monitor.snapshot()["retries"]["total"] == 0
    finally:
        await manager.dispose()


def mover(manager: AsyncSessionManager) -> Any:
    """A decorated function that writes a note and says which server took it."""

    @manager.with_session
    async def move(session: Any, note: str) -> int:
        await session.execute(text("INSERT INTO moves (note) VALUES (:note)"), {"note": note})
        return int((await session.execute(PORT)).scalar_one())

    return move


async def test_writes_go_on_at_the_promoted_replica_after_the_primary_stops(
    cluster: Cluster, backend: str
) -> None:
    manager = manager_of(cluster, backend)

    move = mover(manager)

    try:
        assert await move("before") == cluster.primary.port  # and a pooled connection to it
        cluster.caught_up()
        cluster.primary.stop("fast")
        cluster.replica.promote()
        assert await move("after") == cluster.replica.port
        assert cluster.notes() == ["before", "after"]
        retries = manager.monitor.snapshot()["retries"]
        assert retries["total"] >= 1 and set(retries["by_reason"]) == {"connection"}
        assert manager.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        await manager.dispose()


async def test_a_fenced_primary_refusing_writes_is_a_lost_connection(
    cluster: Cluster, backend: str
) -> None:
    manager = manager_of(cluster, backend)

    move = mover(manager)

    try:
        assert await move("before") == cluster.primary.port
        cluster.caught_up()
        cluster.replica.promote()
        cluster.fence_primary()  # its pooled connection now gets 25006 for any write
        assert await move("after") == cluster.replica.port
        assert cluster.notes() == ["before", "after"]
        assert manager.monitor.snapshot()["retries"]["by_reason"] == {"connection": 1}
    finally:
        await manager.dispose()


async def test_a_write_in_a_read_only_scope_is_not_mistaken_for_a_failover(
    cluster: Cluster, backend: str
) -> None:
    await assert_write_refused_once(manager_of(cluster, backend), read_only=True)


# -- replicas whose state changes under the manager -------------------------------------

IN_RECOVERY = text("SELECT pg_is_in_recovery()")


def replicated_manager(cluster: Cluster, backend: str) -> AsyncSessionManager:
    config = SessionConfig(replica_check_interval=0, log_level="ERROR")
    return AsyncSessionManager(
        cluster.primary.url(backend), replicas=[cluster.replica.url(backend)], config=config
    )


async def read_where(manager: AsyncSessionManager) -> bool:
    async with manager.session_scope(read_only=True) as session:
        return bool((await session.execute(IN_RECOVERY)).scalar_one())


async def test_a_promoted_replica_takes_no_more_reads(cluster: Cluster, backend: str) -> None:
    manager = replicated_manager(cluster, backend)
    try:
        assert await read_where(manager) is True
        cluster.replica.promote()  # the old primary still runs: two primaries
        assert await read_where(manager) is False
        primary, replica = manager.monitor.snapshot()["engines"]
        assert replica["healthy"] is False and primary["fallbacks"] == 1
    finally:
        await manager.dispose()


async def test_a_replica_cut_off_from_its_primary_takes_no_reads(
    cluster: Cluster, backend: str
) -> None:
    manager = replicated_manager(cluster, backend)
    try:
        assert await read_where(manager) is True
        with cluster.replica.connect() as connection:
            connection.execute("ALTER SYSTEM SET primary_conninfo = ''")
            connection.execute("SELECT pg_reload_conf()")
        cluster.wait_for_receivers("SELECT count(*) = 0 FROM pg_stat_wal_receiver")
        assert await read_where(manager) is False  # it would never learn of new commits
    finally:
        await manager.dispose()


async def test_a_restarted_replica_of_an_idle_primary_takes_reads_again(
    cluster: Cluster, backend: str
) -> None:
    manager = replicated_manager(cluster, backend)
    try:
        assert await read_where(manager) is True
        cluster.replica.restart()
        cluster.wait_for_receivers(
            "SELECT count(*) = 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        )
        assert await read_where(manager) is True
        assert manager.monitor.snapshot()["engines"][1]["lag"] == 0
    finally:
        await manager.dispose()


async def test_a_server_read_only_from_the_start_refuses_a_write_without_retries(
    cluster: Cluster, backend: str
) -> None:
    with cluster.primary.connect() as connection:
        connection.execute("CREATE ROLE reporter LOGIN SUPERUSER")
        connection.execute("ALTER ROLE reporter SET default_transaction_read_only = on")
    url = cluster.url(backend).replace("://%s@" % cluster.primary.user, "://reporter@")
    manager = AsyncSessionManager(url.split("&target_session_attrs")[0], config=SessionConfig())
    await assert_write_refused_once(manager, read_only=False)


async def test_fast_path_reads_follow_a_failover(cluster: Cluster, backend: str) -> None:
    config = SessionConfig(
        retry_attempts=20, retry_delay=0.02, retry_max_delay=0.3, read_only_fast_path=True
    )
    manager = AsyncSessionManager(cluster.url(backend), config=config)

    @manager.with_session
    async def move(session: Any, note: str) -> None:
        await session.execute(text("INSERT INTO moves (note) VALUES (:note)"), {"note": note})

    @manager.with_session(read_only=True)
    async def read(session: Any) -> tuple[int, list[str]]:
        port = (await session.execute(PORT)).scalar_one()
        notes = (await session.execute(text("SELECT note FROM moves ORDER BY id"))).scalars()
        return int(port), list(notes)

    try:
        await move("before")
        assert await read() == (cluster.primary.port, ["before"])
        cluster.caught_up()
        cluster.replica.promote()
        cluster.fence_primary()
        await move("after")
        assert await read() == (cluster.replica.port, ["before", "after"])
        assert manager._read_bind is False  # no second engine with a failover URL
    finally:
        await manager.dispose()


async def test_the_comma_form_of_a_multi_host_url_fails_at_once(backend: str) -> None:
    url = "postgresql+%s://u@/db?host=127.0.0.1:5432,127.0.0.1:5433" % backend
    with pytest.raises(ConfigurationError, match=r"\?host=h1:5432&host=h2:5432"):
        AsyncSessionManager(url)


async def test_a_restarted_replica_catching_up_is_waited_for(
    cluster: Cluster, backend: str
) -> None:
    config = SessionConfig(replica_check_interval=0, replica_wait=10, log_level="ERROR")
    manager = AsyncSessionManager(
        cluster.primary.url(backend), replicas=[cluster.replica.url(backend)], config=config
    )
    try:
        cluster.replica.restart()  # it has replayed no commit since: no replay timestamp
        cluster.wait_for_receivers(
            "SELECT count(*) = 1 FROM pg_stat_wal_receiver WHERE status = 'streaming'"
        )
        cluster.replica.pause_replay()
        try:
            await mover(manager)("during")
            token = await manager.commit_token()
        finally:
            threading.Timer(0.3, cluster.replica.resume_replay).start()
        async with manager.session_scope(read_only=True, after=token) as session:
            assert (await session.execute(IN_RECOVERY)).scalar_one() is True
            notes = (await session.execute(text("SELECT note FROM moves"))).scalars()
            assert list(notes) == ["during"]
        assert manager.monitor.snapshot()["engines"][0]["fallbacks"] == 0
    finally:
        await manager.dispose()
