"""sessionscope.testing, tested on itself: whatever the code under test does inside
an isolation, nothing of it survives the isolation, and the managers work as
before afterwards."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sessionscope import (
    CommitOutcomeUnknownError,
    ConfigurationError,
    SessionConfig,
    SessionScopeError,
    on_commit,
)
from sessionscope._async import AsyncSessionManager
from sessionscope._async.isolation import async_isolated
from sessionscope._async_compat import AsyncSession
from tests._async_compat import finish, run_concurrently, start_in_copy
from tests.models import User
from tests.support import Database


class Boom(Exception):
    pass


async def names_in(manager: AsyncSessionManager) -> list[str]:
    """What a scope of ``manager`` sees (inside an isolation: its uncommitted work)."""
    async with manager.session_scope() as session:
        return sorted((await session.scalars(select(User.name))).all())


async def test_nothing_survives_whatever_the_code_under_test_did(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def helper(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))

    async with async_isolated(manager):
        async with manager.session_scope() as session:
            session.add(User(name="committed"))
        await helper("decorated")
        async with manager.session_scope() as session:
            session.add(User(name="own commit"))
            await session.commit()  # releases the savepoint; the scope goes on
            session.add(User(name="after own commit"))
        async with manager.session_scope() as session:
            session.add(User(name="nested outer"))
            async with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="nested inner"))
            async with manager.session_scope(propagation="requires_new") as other:
                other.add(User(name="requires new"))
        with pytest.raises(Boom):
            async with manager.session_scope() as session:
                session.add(User(name="raised"))
                raise Boom
        async with manager.session_scope() as session:
            session.add(User(name="rolled back"))
            await session.rollback()
        assert await names_in(manager) == [
            "after own commit",
            "committed",
            "decorated",
            "nested inner",
            "nested outer",
            "own commit",
            "requires new",
        ]
        assert database.count() == 0  # nothing is committed for anyone else to see
    assert database.count() == 0
    async with manager.session_scope() as session:  # as before, afterwards
        session.add(User(name="real"))
    assert database.names() == ["real"]


async def test_data_from_before_the_isolation_is_visible(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="fixture"))
    async with async_isolated(manager):
        assert await names_in(manager) == ["fixture"]
        async with manager.session_scope() as session:
            (await session.scalars(select(User))).one().name = "renamed"
        assert await names_in(manager) == ["renamed"]
    assert database.names() == ["fixture"]


async def test_a_retry_rolls_back_to_the_savepoint_and_re_runs(
    manager: AsyncSessionManager, database: Database
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=2, retry_on=lambda error: isinstance(error, Boom))
    async def flaky(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="attempt %d" % attempts))
        await session.flush()
        if attempts == 1:
            raise Boom

    async with async_isolated(manager):
        await flaky()
        assert await names_in(manager) == ["attempt 2"]
    assert attempts == 2
    assert database.count() == 0


async def test_callbacks_run_when_the_savepoint_is_released(
    manager: AsyncSessionManager,
) -> None:
    seen: list[str] = []
    async with async_isolated(manager):
        async with manager.session_scope():
            on_commit(lambda: seen.append("committed"))
            assert seen == []
        assert seen == ["committed"]
        with pytest.raises(Boom):
            async with manager.session_scope():
                on_commit(lambda: seen.append("never"))
                raise Boom
    assert seen == ["committed"]


async def test_captured_callbacks_wait_for_the_test(manager: AsyncSessionManager) -> None:
    seen: list[str] = []
    async with async_isolated(manager, on_commit="capture") as isolation:
        async with manager.session_scope() as session:
            on_commit(lambda: seen.append("first"))
            await session.commit()  # the body's own commit: captured too
            on_commit(lambda: seen.append("second"))
        assert seen == []
        assert len(isolation.on_commit_callbacks) == 2
        await isolation.run_on_commit()
        assert seen == ["first", "second"]
        assert isolation.on_commit_callbacks == []


async def test_isolations_nest(manager: AsyncSessionManager, database: Database) -> None:
    async with async_isolated(manager):
        async with manager.session_scope() as session:
            session.add(User(name="module data"))
        async with async_isolated(manager):
            async with manager.session_scope() as session:
                session.add(User(name="one test's data"))
            assert await names_in(manager) == ["module data", "one test's data"]
        assert await names_in(manager) == ["module data"]
    assert database.count() == 0


async def test_concurrent_scopes_take_turns_on_the_one_connection(
    manager: AsyncSessionManager, database: Database
) -> None:
    async def worker(n: int) -> None:
        async with manager.session_scope() as session:
            session.add(User(name="worker %02d" % n))
            await session.flush()
            count = await session.scalar(select(func.count()).select_from(User))
            assert count is not None and count >= 1

    async with async_isolated(manager):
        outcomes = await run_concurrently(*[lambda n=n: worker(n) for n in range(50)])
        assert [o for o in outcomes if isinstance(o, BaseException)] == []
        assert len(await names_in(manager)) == 50
    assert database.count() == 0


async def test_bad_arguments_fail_at_once(manager: AsyncSessionManager) -> None:
    with pytest.raises(ConfigurationError, match="on_commit='later'"):
        async_isolated(manager, on_commit="later")  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="takes"):
        async_isolated(object())  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="at least one"):
        async_isolated()
    with pytest.raises(ConfigurationError, match="same manager twice"):
        async_isolated(manager, manager)
    isolation = async_isolated(manager)
    async with isolation:
        with pytest.raises(SessionScopeError, match="entered once"):
            async with isolation:
                pass


async def test_an_isolation_level_is_refused_inside_an_isolation(
    manager: AsyncSessionManager,
) -> None:
    async with async_isolated(manager):
        with pytest.raises(ConfigurationError, match="inside a test's isolation"):
            async with manager.session_scope(isolation_level="SERIALIZABLE"):
                pass


@pytest.mark.parametrize("ending", ["exit", "own commit", "exception"])
async def test_a_read_only_scope_inside_an_isolation_leaves_no_mode_behind(
    manager: AsyncSessionManager, database: Database, ending: str
) -> None:
    seen: list[str] = []
    async with async_isolated(manager):
        async with manager.session_scope() as session:
            session.add(User(name="before"))
        try:
            async with manager.session_scope(read_only=True) as session:
                assert await names_in(manager) == ["before"]  # joins: same transaction
                session.add(User(name="refused"))
                with pytest.raises(DBAPIError):
                    await session.flush()
                await session.rollback()
                on_commit(lambda: seen.append("read"))
                if ending == "own commit":
                    await session.commit()
                    assert seen == ["read"]
                if ending == "exception":
                    raise Boom
        except Boom:
            pass
        async with manager.session_scope() as session:  # writes work again
            session.add(User(name="after"))
        assert await names_in(manager) == ["after", "before"]
    assert seen == ([] if ending == "exception" else ["read"])
    assert database.count() == 0


# -- injected faults: the real driver's error through the real classification ------------


SQLITE_FAULTS = ("serialization_failure", "deadlock")


async def _inject_or_skip(isolation: Any, database: Database, fault: str, times: int) -> bool:
    """Inject ``fault``; False where the backend has no such fault (the connection
    faults on SQLite), after checking that inject() says so at once."""
    if database.is_postgres or fault in SQLITE_FAULTS:
        isolation.inject(fault, times=times)
        return True
    with pytest.raises(ConfigurationError, match="not available on SQLite"):
        isolation.inject(fault, times=times)
    return False


def _raised_by_the_driver(error: BaseException, database: Database, fault: str) -> bool:
    """The error is the driver's own, with the database's code for ``fault``."""
    assert isinstance(error, DBAPIError)
    orig = error.orig
    if database.is_postgres:
        codes = {"serialization_failure": "40001", "deadlock": "40P01"}
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return code == codes.get(fault, "08006")
    # SQLITE_BUSY (5), from a real lock conflict; the driver is sqlite3 or aiosqlite's.
    return type(orig).__module__ == "sqlite3" and orig.sqlite_errorcode & 0xFF == 5  # type: ignore[attr-defined]


@pytest.mark.parametrize("fault", ["serialization_failure", "deadlock", "connection_lost"])
async def test_an_injected_transient_fault_is_retried(
    manager: AsyncSessionManager, database: Database, fault: str
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=3)
    async def transfer(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="attempt %d" % attempts))

    async with async_isolated(manager) as isolation:
        if not await _inject_or_skip(isolation, database, fault, times=2):
            return
        await transfer()
        assert attempts == 3  # two failed commits, then the third landed
        assert await names_in(manager) == ["attempt 3"]
        snapshot = manager.monitor.snapshot()
        expected = "connection" if fault == "connection_lost" else fault
        if not database.is_postgres:
            expected = "sqlite_busy"
        assert snapshot["retries"]["by_reason"].get(expected) == 2
    assert database.count() == 0


async def test_an_injected_unknown_commit_outcome_is_not_re_run(
    manager: AsyncSessionManager, database: Database
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=3)
    async def charge(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="charged"))

    @manager.with_session(retry_attempts=3, idempotent=True)
    async def upsert(session: AsyncSession) -> None:
        session.add(User(name="upserted"))

    async with async_isolated(manager) as isolation:
        if not await _inject_or_skip(isolation, database, "commit_outcome_unknown", times=1):
            return
        with pytest.raises(CommitOutcomeUnknownError):
            await charge()
        assert attempts == 1
        assert await names_in(manager) == []  # rolled back, as if it had not landed
        isolation.inject("commit_outcome_unknown")
        await upsert()  # declared idempotent: re-run
        assert await names_in(manager) == ["upserted"]
    assert database.count() == 0


@pytest.mark.parametrize("fault", ["serialization_failure", "deadlock", "connection_lost"])
async def test_an_injected_fault_fails_the_bodys_own_commit_and_its_work(
    manager: AsyncSessionManager, database: Database, fault: str
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=2)
    async def two_steps(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="step 1, attempt %d" % attempts))
        await session.commit()  # the first virtual COMMIT fails
        session.add(User(name="step 2, attempt %d" % attempts))

    async with async_isolated(manager) as isolation:
        if not await _inject_or_skip(isolation, database, fault, times=1):
            return
        async with manager.session_scope() as session:
            session.add(User(name="lost"))
            with pytest.raises(DBAPIError) as raised:
                await session.commit()
            assert _raised_by_the_driver(raised.value, database, fault)
            session.add(User(name="kept"))  # the session goes on, in a new savepoint
        assert await names_in(manager) == ["kept"]
        isolation.inject(fault)
        await two_steps()  # failed before it committed anything: re-run
        assert attempts == 2
        assert await names_in(manager) == ["kept", "step 1, attempt 2", "step 2, attempt 2"]
    assert database.count() == 0


@pytest.mark.parametrize("fault", ["serialization_failure", "deadlock"])
async def test_an_injected_fault_is_the_drivers_own_error(
    manager: AsyncSessionManager, database: Database, fault: str
) -> None:
    async with async_isolated(manager) as isolation:
        isolation.inject(fault, times=3)
        for read_only in (False, True, False):
            with pytest.raises(DBAPIError) as raised:
                async with manager.session_scope(read_only=read_only) as session:
                    await session.scalar(select(func.count(User.id)))
            assert _raised_by_the_driver(raised.value, database, fault)
        async with manager.session_scope() as session:  # the faults are used up
            session.add(User(name="landed"))
        assert await names_in(manager) == ["landed"]
    assert database.count() == 0
    async with manager.session_scope() as session:  # the pool's connections as before
        if not database.is_postgres:
            rows = (await session.execute(text("PRAGMA database_list"))).all()
            assert [row[1] for row in rows] == ["main"]
        session.add(User(name="real"))
    assert database.names() == ["real"]


async def test_a_callers_session_inside_its_requires_new_scope_fails_clearly(
    manager: AsyncSessionManager, database: Database
) -> None:
    # Independent transactions in production; savepoints of one connection here.
    async with async_isolated(manager):
        async with manager.session_scope() as session:
            session.add(User(name="caller"))
            await session.flush()
            with pytest.raises(SessionScopeError, match="requires_new"):
                async with manager.session_scope(propagation="requires_new") as other:
                    other.add(User(name="inner"))
                    await other.flush()
                    await session.commit()  # would release the inner savepoint too
        with pytest.raises(SessionScopeError, match="requires_new"):
            async with manager.session_scope() as session:
                session.add(User(name="committed"))
                await session.commit()  # no transaction left in this session
                async with manager.session_scope(propagation="requires_new") as other:
                    other.add(User(name="inner 2"))
                    await other.flush()
                    await session.scalar(select(func.count(User.id)))  # begins above it
        async with manager.session_scope() as session:
            async with manager.session_scope(propagation="requires_new") as other:
                other.add(User(name="after"))  # before or after: fine
            session.add(User(name="caller again"))
        assert await names_in(manager) == ["after", "caller", "caller again", "committed"]
    assert database.count() == 0


async def test_bad_faults_fail_at_once(manager: AsyncSessionManager) -> None:
    async with async_isolated(manager) as isolation:
        with pytest.raises(ConfigurationError, match="inject\\('oops'\\)"):
            isolation.inject("oops")
        with pytest.raises(ConfigurationError, match="times=0"):
            isolation.inject("deadlock", times=0)


async def test_a_callback_of_the_bodys_commit_opens_a_scope_at_once(
    manager: AsyncSessionManager, database: Database
) -> None:
    # The committing scope still has the connection's turn; the callback runs where
    # production runs it, after the commit, and its scope uses that turn.
    async def audit() -> None:
        async with manager.session_scope() as session:
            session.add(User(name="audit"))

    async with async_isolated(manager):
        async with manager.session_scope() as session:
            session.add(User(name="work"))
            on_commit(audit)
            await session.commit()
            assert await names_in(manager) == ["audit", "work"]
    assert database.count() == 0


async def test_an_isolation_inside_a_scope_of_its_manager_is_refused(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="real"))
        with pytest.raises(ConfigurationError, match="inside a scope of it"):
            async with async_isolated(manager):
                pass
    assert database.names() == ["real"]
    assert manager._isolation is None


async def test_a_scope_started_inside_another_waits_boundedly_and_says_why(
    database: Database, config: SessionConfig
) -> None:
    manager = AsyncSessionManager(database.url, config=config, pool_timeout=0.2)

    async def worker() -> None:
        async with manager.session_scope() as session:
            session.add(User(name="never"))

    try:
        async with async_isolated(manager):
            async with manager.session_scope():
                handle = start_in_copy(worker)
                with pytest.raises(PoolTimeoutError, match="connection of a test's isolation"):
                    await finish(handle)
    finally:
        await manager.dispose()
    assert database.count() == 0
