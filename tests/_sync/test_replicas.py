# Generated from tests/_async/test_replicas.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""Read replicas (README "Replicas, poolers and failover"): read-only scopes on a
real streaming replica, skipped when it refuses connections or lags, commit
tokens for reading one's own writes, and the primary when no replica fits."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError

from sessionscope import ConfigurationError, SessionConfig
from sessionscope._pooler import pgbouncer_connect_args
from sessionscope._sync import SessionManager
from sessionscope._sync_compat import IS_ASYNC, sync_engine_of
from sessionscope._transient import sqlstate_of
from tests._sync.conftest import PGBOUNCER_BACKENDS
from tests._sync_compat import sleep
from tests.models import User
from tests.pg_bouncer import PgBouncer
from tests.pg_server import PostgresServer, _free_port
from tests.support import Database

IN_RECOVERY = text("SELECT pg_is_in_recovery()")
POSTGRES_BACKENDS = ("psycopg", "asyncpg") if IS_ASYNC else ("psycopg",)
# Replicas are PostgreSQL's: these tests run on its drivers; SQLite's refusal is below.
postgres_only = pytest.mark.parametrize("backend", POSTGRES_BACKENDS)


@pytest.fixture
def replica(pg_replica: PostgresServer) -> PostgresServer:
    return pg_replica


@pytest.fixture
def fast_config(config: SessionConfig) -> SessionConfig:
    # Lag is learned by every scope, a refusing replica is tried again after 0.3 s;
    # the read-only fast path is on.
    return config.replace(
        replica_check_interval=0,
        replica_cool_down=0.3,
        max_replica_lag=1.0,
        read_only_fast_path=True,
    )


@pytest.fixture
def replicated(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> Iterator[SessionManager]:
    """A manager of the primary with the replica, caught up with the schema."""
    manager = SessionManager(database.url, replicas=[database.url_of(replica)], config=fast_config)
    database.wait_replayed(replica)
    yield manager
    try:
        assert_nothing_checked_out(manager)
    finally:
        manager.dispose()


def assert_nothing_checked_out(manager: SessionManager) -> None:
    engines = [manager.engine]
    if manager._replicas is not None:
        engines += [replica.engine for replica in manager._replicas.replicas]
    for engine in engines:
        assert sync_engine_of(engine).pool.checkedout() == 0, "a connection was left checked out"


@contextmanager
def paused(replica: PostgresServer) -> Iterator[None]:
    """The replica receives the primary's WAL but applies none of it: it lags."""
    replica.pause_replay()
    try:
        yield
    finally:
        replica.resume_replay()


def refusing_url(database: Database, replica: PostgresServer) -> str:
    """The replica's URL on a port nothing listens on: every connection is refused."""
    return database.url_of(replica).replace(":%d/" % replica.port, ":%d/" % _free_port())


def add_user(manager: SessionManager, name: str) -> None:
    with manager.session_scope() as session:
        session.add(User(name=name))


def where_and_count(session: Any) -> tuple[bool, int]:
    in_recovery = (session.execute(IN_RECOVERY)).scalar_one()
    count = (session.execute(select(func.count()).select_from(User))).scalar_one()
    return bool(in_recovery), int(count)


# -- routing ---------------------------------------------------------------------------


@postgres_only
def test_read_only_scopes_run_on_the_replica_and_others_on_the_primary(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    add_user(replicated, "ada")
    database.wait_replayed(replica)
    with replicated.session_scope(read_only=True) as session:
        assert where_and_count(session) == (True, 1)
    with replicated.session_scope() as session:
        assert where_and_count(session) == (False, 1)
    engines = replicated.monitor.snapshot()["engines"]
    assert [(e["role"], e["routed"]) for e in engines] == [("primary", 2), ("replica", 1)]
    assert engines[0]["fallbacks"] == 0
    assert engines[1]["healthy"] is True and engines[1]["lag"] == 0


@postgres_only
def test_a_write_in_a_read_only_scope_on_the_replica_is_refused(
    replicated: SessionManager, database: Database
) -> None:
    with pytest.raises(DBAPIError, match="read-only transaction") as raised:
        with replicated.session_scope(read_only=True) as session:
            session.add(User(name="nope"))
            session.flush()
    assert sqlstate_of(raised.value) == "25006"
    assert database.count() == 0


@postgres_only
def test_scopes_joining_a_read_only_scope_stay_on_its_replica(
    replicated: SessionManager,
) -> None:
    with replicated.session_scope(read_only=True) as outer:
        with replicated.session_scope() as inner:
            assert inner is outer
            assert (inner.execute(IN_RECOVERY)).scalar_one() is True
        with replicated.session_scope(propagation="nested") as nested:
            assert (nested.execute(IN_RECOVERY)).scalar_one() is True


@postgres_only
def test_a_read_only_requires_new_scope_inside_a_write_runs_on_the_replica(
    replicated: SessionManager,
) -> None:
    with replicated.session_scope() as writing:
        assert (writing.execute(IN_RECOVERY)).scalar_one() is False
        with replicated.session_scope(propagation="requires_new", read_only=True) as reading:
            assert (reading.execute(IN_RECOVERY)).scalar_one() is True


@postgres_only
def test_replicas_take_turns(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    url = database.url_of(replica)
    manager = SessionManager(database.url, replicas=[url, url], config=fast_config)
    try:
        for _ in range(6):
            with manager.session_scope(read_only=True) as session:
                assert (session.execute(IN_RECOVERY)).scalar_one() is True
        routed = [e["routed"] for e in manager.monitor.snapshot()["engines"]]
        assert routed == [0, 3, 3]
        assert_nothing_checked_out(manager)
    finally:
        manager.dispose()


@postgres_only
def test_a_replica_refusing_connections_is_skipped_for_its_cool_down(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    refusing = refusing_url(database, replica)
    manager = SessionManager(
        database.url, replicas=[refusing, database.url_of(replica)], config=fast_config
    )
    try:
        for _ in range(4):
            with manager.session_scope(read_only=True) as session:
                assert (session.execute(IN_RECOVERY)).scalar_one() is True
        first = manager.monitor.snapshot()["engines"]
        assert [e["refused"] for e in first[1:]] == [1, 0]  # tried once, then cooling down
        assert first[1]["healthy"] is False
        assert [e["routed"] for e in first] == [0, 0, 4]
        sleep(0.35)  # the cool-down is over: tried again, and refused again
        with manager.session_scope(read_only=True) as session:
            assert (session.execute(IN_RECOVERY)).scalar_one() is True
        assert manager.monitor.snapshot()["engines"][1]["refused"] == 2
        assert_nothing_checked_out(manager)
    finally:
        manager.dispose()


@postgres_only
def test_with_no_replica_fit_the_primary_takes_the_scope(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    refusing = refusing_url(database, replica)
    manager = SessionManager(database.url, replicas=[refusing], config=fast_config)
    try:
        with manager.session_scope(read_only=True) as session:
            assert (session.execute(IN_RECOVERY)).scalar_one() is False
            with pytest.raises(Exception, match="read-only transaction"):
                session.execute(text("CREATE TABLE t_nope (x int)"))
            session.rollback()
        primary = manager.monitor.snapshot()["engines"][0]
        assert primary["fallbacks"] == 1 and primary["routed"] == 1
    finally:
        manager.dispose()


@postgres_only
def test_a_lagging_replica_is_skipped_until_it_catches_up(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    with paused(replica):
        add_user(replicated, "ada")
        sleep(1.2)  # over max_replica_lag (1 s) since the last commit it replayed
        with replicated.session_scope(read_only=True) as session:
            assert where_and_count(session) == (False, 1)
        figures = replicated.monitor.snapshot()["engines"]
        assert figures[1]["lag"] > 1.0 and figures[1]["healthy"] is False
        assert figures[0]["fallbacks"] == 1
    database.wait_replayed(replica)
    with replicated.session_scope(read_only=True) as session:
        assert where_and_count(session) == (True, 1)
    assert replicated.monitor.snapshot()["engines"][1]["lag"] == 0


@postgres_only
def test_lag_is_learned_once_per_interval_not_per_scope(
    database: Database, replica: PostgresServer, config: SessionConfig
) -> None:
    manager = SessionManager(
        database.url,
        replicas=[database.url_of(replica)],
        config=config.replace(replica_check_interval=60),
    )
    asked: list[str] = []
    replica_engine = sync_engine_of(manager._replicas.replicas[0].engine)  # type: ignore[union-attr]

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "pg_last_wal_replay_lsn" in statement:
            asked.append(statement)

    event.listen(replica_engine, "before_cursor_execute", record)
    try:
        for _ in range(5):
            with manager.session_scope(read_only=True) as session:
                assert (session.execute(IN_RECOVERY)).scalar_one() is True
        assert len(asked) == 1
    finally:
        manager.dispose()


# -- read your writes ------------------------------------------------------------------


@postgres_only
def test_a_token_reads_its_writes_on_the_primary_while_the_replica_lags(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    with paused(replica):
        add_user(replicated, "ada")
        token = replicated.commit_token()
        with replicated.session_scope(read_only=True) as session:
            assert where_and_count(session) == (True, 0)  # a stale read, as asked
        started = time.monotonic()
        with replicated.session_scope(read_only=True, after=token) as session:
            assert where_and_count(session) == (False, 1)
        assert time.monotonic() - started >= replicated.config.replica_wait * 0.9
        assert replicated.monitor.snapshot()["engines"][0]["fallbacks"] == 1


@postgres_only
def test_a_token_waits_for_a_replica_that_catches_up(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    manager = SessionManager(
        database.url,
        replicas=[database.url_of(replica)],
        config=replicated.config.replace(replica_wait=10, max_replica_lag=60),
    )
    try:
        replica.pause_replay()
        try:
            add_user(manager, "ada")
            token = manager.commit_token()
        finally:
            resume = threading.Timer(0.3, replica.resume_replay)
            resume.start()
        with manager.session_scope(read_only=True, after=token) as session:
            assert where_and_count(session) == (True, 1)
        resume.join()
    finally:
        manager.dispose()


@postgres_only
def test_a_token_from_another_manager_is_honoured(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    writer = SessionManager(database.url)  # another process, say: no replicas
    try:
        with paused(replica):
            add_user(writer, "ada")
            token = writer.commit_token()
            with replicated.session_scope(read_only=True, after=token) as session:
                assert (where_and_count(session))[1] == 1
    finally:
        writer.dispose()


@postgres_only
def test_a_read_only_function_that_loses_its_replica_runs_again_on_another(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    url = database.url_of(replica)
    manager = SessionManager(
        database.url, replicas=[url, url], config=fast_config.replace(replica_cool_down=60)
    )
    attempts: list[bool] = []

    @manager.with_session(read_only=True)
    def read(session: Any) -> int:
        attempts.append((session.execute(IN_RECOVERY)).scalar_one())
        if len(attempts) == 1:
            session.execute(text("SELECT pg_terminate_backend(pg_backend_pid())"))
        return int((session.execute(select(func.count()).select_from(User))).scalar_one())

    try:
        assert read() == 0
        assert attempts == [True, True]
        figures = manager.monitor.snapshot()["engines"]
        assert [e["refused"] for e in figures[1:]] == [1, 0]
        assert [e["routed"] for e in figures[1:]] == [1, 1]
        assert manager.monitor.snapshot()["retries"]["by_reason"] == {"connection": 1}
        assert_nothing_checked_out(manager)
    finally:
        manager.dispose()


# -- bad input -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["sqlite"])
def test_tokens_and_replicas_are_postgresql_only(database: Database) -> None:
    with pytest.raises(ConfigurationError, match="replicas are PostgreSQL"):
        SessionManager(database.url, replicas=[database.url])
    manager = SessionManager(database.url)
    try:
        with pytest.raises(ConfigurationError, match="commit tokens are PostgreSQL"):
            manager.commit_token()
        with pytest.raises(ConfigurationError, match="commit tokens are PostgreSQL"):
            manager.session_scope(read_only=True, after="0/1")
    finally:
        manager.dispose()


def test_bad_replicas_and_tokens_fail_at_once(manager: SessionManager) -> None:
    url = str(manager.engine.url.render_as_string(hide_password=False))
    with pytest.raises(ConfigurationError, match="list of database URLs"):
        SessionManager(url, replicas=url)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match=r"replica must be .* got 42"):
        SessionManager(url, replicas=[42])  # type: ignore[list-item]
    with pytest.raises(ConfigurationError, match=r"after='yesterday' is not a commit token"):
        manager.session_scope(read_only=True, after="yesterday")
    with pytest.raises(ConfigurationError, match=r"after='0/1' is for read-only scopes"):
        manager.session_scope(after="0/1")
    with pytest.raises(ConfigurationError, match="max_replica_lag"):
        SessionConfig(max_replica_lag=-1)
    with manager.session_scope() as session:
        if manager.engine.dialect.name == "postgresql":
            with pytest.raises(ConfigurationError, match="after= can only be given"):
                with manager.session_scope(read_only=True, after="0/1"):
                    pass
        assert session is not None


def test_without_a_token_yet_a_scope_runs_as_without_one(
    manager: SessionManager,
) -> None:
    with manager.session_scope(read_only=True, after=None) as session:
        assert (session.execute(text("SELECT 1"))).scalar_one() == 1


# -- the read-only fast path -------------------------------------------------------------

# Two statements a moment apart: in one transaction now() is the same for both; in
# the fast path each statement is a transaction of its own.
NOW = text("SELECT now()")


def transactions_of(session: Any) -> int:
    first = (session.execute(NOW)).scalar_one()
    sleep(0.01)
    second = (session.execute(NOW)).scalar_one()
    return 1 if first == second else 2


@postgres_only
def test_read_only_scopes_take_the_fast_path_on_replica_and_primary(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    add_user(replicated, "ada")  # and the server's default level is learned
    database.wait_replayed(replica)
    with replicated.session_scope(read_only=True) as session:
        assert where_and_count(session) == (True, 1)
        assert transactions_of(session) == 2
    on_primary = SessionManager(database.url, config=replicated.config)
    try:
        add_user(on_primary, "bob")
        with on_primary.session_scope(read_only=True) as session:
            assert where_and_count(session) == (False, 2)
            assert transactions_of(session) == 2
            assert (
                session.execute(text("SELECT current_setting('transaction_read_only')"))
            ).scalar_one() == "on"
        assert on_primary._read_engine is not None
        assert sync_engine_of(on_primary._read_engine).pool.checkedout() == 0
    finally:
        on_primary.dispose()


@postgres_only
def test_without_the_option_read_only_scopes_keep_their_transaction(
    database: Database, replica: PostgresServer, config: SessionConfig
) -> None:
    manager = SessionManager(database.url, replicas=[database.url_of(replica)], config=config)
    try:
        add_user(manager, "ada")
        database.wait_replayed(replica)
        with manager.session_scope(read_only=True) as session:
            assert where_and_count(session) == (True, 1)
            assert transactions_of(session) == 1
        on_primary = SessionManager(database.url, config=config)
        try:
            with on_primary.session_scope(read_only=True) as session:
                assert transactions_of(session) == 1
            assert on_primary._read_engine is None
        finally:
            on_primary.dispose()
    finally:
        manager.dispose()


@postgres_only
def test_behind_a_pooler_that_ignores_the_startup_parameter_writes_are_refused(
    database: Database, fast_config: SessionConfig
) -> None:
    server = database.pg_server
    ignoring = PgBouncer(
        {server.dbname: server}, ignored=("options", "default_transaction_read_only")
    )
    ignoring.start()
    driver = database.url.split("://", 1)[0].split("+")[1]
    manager = SessionManager(
        ignoring.url(server.dbname, driver),
        config=fast_config,
        connect_args=pgbouncer_connect_args(driver),
    )
    try:
        add_user(manager, "ada")
        for _ in range(2):  # the first unchecked connection turns the fast path off
            with pytest.raises(DBAPIError, match="read-only transaction"):
                with manager.session_scope(read_only=True) as session:
                    assert transactions_of(session) == 1
                    session.execute(text("INSERT INTO users (name) VALUES ('x')"))
        assert manager._read_bind is False
        assert database.names() == ["ada"]
    finally:
        manager.dispose()
        ignoring.close()


@postgres_only
def test_a_managers_first_read_only_scope_takes_the_fast_path(
    database: Database, fast_config: SessionConfig
) -> None:
    manager = SessionManager(database.url, config=fast_config)
    try:
        with manager.session_scope(read_only=True) as session:
            assert transactions_of(session) == 2
    finally:
        manager.dispose()


@postgres_only
def test_the_fast_path_still_refuses_writes(replicated: SessionManager, database: Database) -> None:
    on_primary = SessionManager(database.url, config=replicated.config)
    try:
        add_user(on_primary, "ada")
        for manager in (replicated, on_primary):
            with pytest.raises(DBAPIError) as raised:
                with manager.session_scope(read_only=True) as session:
                    assert transactions_of(session) == 2
                    session.add(User(name="nope"))
                    session.flush()
            assert sqlstate_of(raised.value) == "25006"
        assert database.names() == ["ada"]
        # The primary's write scopes are not read-only for all that.
        add_user(on_primary, "bob")
        assert database.names() == ["ada", "bob"]
    finally:
        on_primary.dispose()


@postgres_only
def test_nested_scopes_and_the_bodys_commit_in_the_fast_path(
    replicated: SessionManager,
) -> None:
    add_user(replicated, "ada")
    with replicated.session_scope(read_only=True) as session:
        assert transactions_of(session) == 2
        with pytest.raises(DBAPIError):
            with replicated.session_scope(propagation="nested") as nested:
                nested.execute(text("SELECT 1/0"))
        with replicated.session_scope(propagation="nested") as nested:
            assert (nested.execute(text("SELECT 2"))).scalar_one() == 2
        session.commit()
        assert (session.execute(text("SELECT 3"))).scalar_one() == 3
    snapshot = replicated.monitor.snapshot()
    assert snapshot["savepoints"] == {"opened": 2, "released": 1, "rolled_back": 1}


@postgres_only
def test_read_only_scopes_with_more_to_set_keep_a_transaction(
    replicated: SessionManager,
) -> None:
    add_user(replicated, "ada")
    for options in (
        {"isolation_level": "REPEATABLE READ"},
        {"statement_timeout": 5},
        {"settings": {"app.x": "1"}},
        {"deadline": 5},
    ):
        with replicated.session_scope(read_only=True, **options) as session:
            assert transactions_of(session) == 1, options
            assert (session.execute(IN_RECOVERY)).scalar_one() is True


@postgres_only
def test_no_fast_path_state_goes_back_to_the_pool(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    manager = SessionManager(
        database.url, replicas=[database.url_of(replica)], config=fast_config, pool_size=1
    )
    try:
        add_user(manager, "ada")
        for _ in range(2):  # the replica's one connection, in and out of the fast path
            with manager.session_scope(read_only=True) as session:
                assert transactions_of(session) == 2
            with manager.session_scope(
                read_only=True, isolation_level="REPEATABLE READ"
            ) as session:
                assert transactions_of(session) == 1
                level = text("SELECT current_setting('transaction_isolation')")
                assert (session.execute(level)).scalar_one() == "repeatable read"
        assert_nothing_checked_out(manager)
    finally:
        manager.dispose()


@pytest.mark.parametrize("backend", PGBOUNCER_BACKENDS, indirect=True)
def test_behind_pgbouncer_the_fast_path_serves_replicas_only(
    database: Database, pg_bouncer: Any, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    replica_url = database.url.replace(
        "/%s" % database.pg_server.dbname, "/%s_replica" % database.pg_server.dbname
    )
    manager = SessionManager(
        database.url, replicas=[replica_url], config=fast_config, **database.engine_options
    )
    primary_only = SessionManager(database.url, config=fast_config, **database.engine_options)
    try:
        add_user(manager, "ada")
        database.wait_replayed(replica)
        with manager.session_scope(read_only=True) as session:
            assert (session.execute(IN_RECOVERY)).scalar_one() is True
            assert transactions_of(session) == 2
        add_user(primary_only, "bob")
        for _ in range(2):  # the first refusal turns the primary's fast path off
            with primary_only.session_scope(read_only=True) as session:
                assert transactions_of(session) == 1
                with pytest.raises(DBAPIError, match="read-only transaction"):
                    session.execute(text("INSERT INTO users (name) VALUES ('x')"))
        assert primary_only._read_bind is False
        assert database.names() == ["ada", "bob"]
    finally:
        manager.dispose()
        primary_only.dispose()


# -- what a review found ---------------------------------------------------------------


@postgres_only
def test_a_token_taken_after_a_wal_switch_is_met_by_the_replica(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    add_user(replicated, "ada")
    with database.pg_server.connect() as connection:
        connection.execute("SELECT pg_switch_wal()")  # the insert position: past a header
    token = replicated.commit_token()
    manager = SessionManager(
        database.url,
        replicas=[database.url_of(replica)],
        config=replicated.config.replace(replica_wait=5),
    )
    try:
        started = time.monotonic()
        with manager.session_scope(read_only=True, after=token) as session:
            assert where_and_count(session) == (True, 1)
        assert time.monotonic() - started < 2
    finally:
        manager.dispose()


@postgres_only
def test_a_token_wait_leaves_the_primary_time_within_the_deadline(
    replicated: SessionManager, replica: PostgresServer
) -> None:
    with paused(replica):
        add_user(replicated, "ada")
        token = replicated.commit_token()
        with replicated.session_scope(read_only=True, after=token, deadline=0.4) as session:
            assert where_and_count(session) == (False, 1)


@postgres_only
def test_after_may_be_a_function_called_as_each_scope_starts(
    replicated: SessionManager, replica: PostgresServer
) -> None:
    tokens: list[str | None] = [None]

    @replicated.with_session(read_only=True, after=lambda: tokens[-1])
    def read(session: Any) -> tuple[bool, int]:
        return where_and_count(session)

    with paused(replica):
        add_user(replicated, "ada")
        assert read() == (True, 0)  # no token: the replica, as it is
        tokens.append(replicated.commit_token())
        assert read() == (False, 1)  # the token: where the write can be read


@postgres_only
def test_read_only_serializable_scopes_run_on_the_primary(
    replicated: SessionManager, database: Database, replica: PostgresServer
) -> None:
    with replicated.session_scope(read_only=True, isolation_level="SERIALIZABLE") as session:
        assert (session.execute(IN_RECOVERY)).scalar_one() is False
    with pytest.raises(ConfigurationError, match="a hot standby refuses"):
        SessionManager(
            database.url, replicas=[database.url_of(replica)], isolation_level="SERIALIZABLE"
        )


@postgres_only
def test_a_replica_that_never_answers_is_skipped_like_one_that_refuses(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    # A listening socket nobody accepts from: the TCP handshake completes, nothing more.
    silent = socket.create_server(("127.0.0.1", 0))
    port = silent.getsockname()[1]
    timeout = {"asyncpg": {"timeout": 1}}.get(database.backend, {"connect_timeout": 1})
    try:
        manager = SessionManager(
            database.url,
            replicas=[
                database.url_of(replica).replace(":%d/" % replica.port, ":%d/" % port),
                database.url_of(replica),
            ],
            config=fast_config.replace(replica_cool_down=60),
            connect_args=timeout,
        )
        try:
            for _ in range(3):
                with manager.session_scope(read_only=True) as session:
                    assert (session.execute(IN_RECOVERY)).scalar_one() is True
            figures = manager.monitor.snapshot()["engines"]
            assert [e["refused"] for e in figures[1:]] == [1, 0]
            assert_nothing_checked_out(manager)
        finally:
            manager.dispose()
    finally:
        silent.close()


@postgres_only
def test_a_read_only_body_whose_own_commit_loses_the_replica_runs_again(
    database: Database, replica: PostgresServer, fast_config: SessionConfig
) -> None:
    url = database.url_of(replica)
    manager = SessionManager(
        database.url, replicas=[url, url], config=fast_config.replace(replica_cool_down=60)
    )
    attempts: list[int] = []

    @manager.with_session(read_only=True, isolation_level="REPEATABLE READ")
    def read(session: Any) -> int:
        pid = (session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        attempts.append(pid)
        if len(attempts) == 1:
            with replica.connect() as killer:
                killer.execute("SELECT pg_terminate_backend(%s)", (pid,))
        session.commit()
        return len(attempts)

    try:
        assert read() == 2
        assert [e["refused"] for e in manager.monitor.snapshot()["engines"][1:]] == [1, 0]
        assert_nothing_checked_out(manager)
    finally:
        manager.dispose()


@postgres_only
def test_resetting_the_monitor_resets_the_engines_counts(
    replicated: SessionManager,
) -> None:
    for _ in range(3):
        with replicated.session_scope(read_only=True) as session:
            session.execute(IN_RECOVERY)
    replicated.monitor.reset()
    assert [e["routed"] for e in replicated.monitor.snapshot()["engines"]] == [0, 0]
