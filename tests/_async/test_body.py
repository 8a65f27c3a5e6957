"""What the body may do to its transaction, and what it may not (the README's
"What the body may do"): ownership, Rollback, options and callbacks that
follow the body's own commit, copies of a scope's context, single-connection pools.
"""

from __future__ import annotations

import contextvars
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from sessionscope import (
    ConfigurationError,
    NoActiveSessionError,
    Rollback,
    SessionConfig,
    TransactionOwnershipError,
    TransactionRolledBackError,
    current_session,
    on_commit,
    on_rollback,
)
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import IS_ASYNC, AsyncSession, sleep
from tests._async_compat import (
    Event,
    create_tables,
    finish,
    run_concurrently,
    run_in,
    start_in_copy,
    wait_for_event,
)
from tests.models import User
from tests.support import Database

MEMORY_URL = ("sqlite+aiosqlite" if IS_ASYNC else "sqlite") + "://"


class Boom(Exception):
    pass


# -- only the owner of a transaction ends it -------------------------------------------


async def test_a_decorated_helper_cannot_commit_its_callers_work(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def helper(session: AsyncSession) -> None:
        session.add(User(name="helper"))
        await session.commit()

    with pytest.raises(TransactionOwnershipError) as raised:
        async with manager.session_scope() as session:
            session.add(User(name="caller"))
            await helper()
            raise Boom  # not reached: the helper's commit was refused
    assert database.count() == 0
    assert "session.commit() in a scope that joined the transaction" in str(raised.value)
    # Where the owner was opened: its function and file (and the line it is running).
    owner = "test_a_decorated_helper_cannot_commit_its_callers_work at %s:" % __file__
    assert owner in str(raised.value)


@pytest.mark.parametrize("how", ["rollback", "close"])
async def test_a_joined_scope_cannot_throw_away_its_callers_work(
    manager: AsyncSessionManager, database: Database, how: str
) -> None:
    @manager.with_session
    async def helper(session: AsyncSession) -> None:
        await getattr(session, how)()

    with pytest.raises(TransactionRolledBackError):
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            await session.flush()
            with pytest.raises(TransactionOwnershipError, match="session.%s()" % how):
                await helper()
            session.add(User(name="bob"))  # the caller goes on as if all were well
    assert database.count() == 0


async def test_a_nested_scope_cannot_commit_the_transaction(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        with pytest.raises(TransactionOwnershipError, match="nested scope"):
            async with manager.session_scope(propagation="nested") as inner:
                inner.add(User(name="bob"))
                await inner.commit()
        assert database.count() == 0  # the savepoint was rolled back, nothing committed
        outer.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


@pytest.mark.parametrize("propagation", ["required", "nested"])
async def test_the_body_cannot_commit_around_the_session(
    manager: AsyncSessionManager, database: Database, propagation: str
) -> None:
    # SQLAlchemy's other way to commit: the transaction object itself.
    with pytest.raises(TransactionOwnershipError):
        async with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            async with manager.session_scope(propagation=propagation) as inner:  # type: ignore[call-overload]
                transaction = inner.get_transaction()
                assert transaction is not None
                await transaction.commit()
    assert database.names() == []


async def test_a_joined_scope_cannot_commit_with_session_begin(
    manager: AsyncSessionManager, database: Database
) -> None:
    # After the owner's own commit no transaction is open, and session.begin() would
    # open one that its block commits: in a joined helper, that is refused too.
    @manager.with_session
    async def helper(session: AsyncSession) -> None:
        async with session.begin():
            session.add(User(name="helper"))

    with pytest.raises(TransactionOwnershipError):
        async with manager.session_scope() as session:
            session.add(User(name="step 1"))
            await session.commit()
            await helper()
    assert database.names() == ["step 1"]


async def test_a_rollback_around_the_session_fails_its_owner(
    manager: AsyncSessionManager, database: Database
) -> None:
    # Nothing can undo it: the owner must not then commit as if all were well.
    with pytest.raises(TransactionRolledBackError) as raised:
        async with manager.session_scope() as outer:
            outer.add(User(name="ada"))
            async with manager.session_scope() as joined:
                transaction = joined.get_transaction()
                assert transaction is not None
                await transaction.rollback()
            outer.add(User(name="bob"))
    assert isinstance(raised.value.__cause__, TransactionOwnershipError)
    assert database.names() == []


async def test_a_foreign_session_passed_in_is_left_alone(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))
        await session.commit()  # the caller's session, the caller's business

    async with AsyncSession(manager.engine) as foreign:
        await create_user(foreign, "ada")
    assert database.names() == ["ada"]


# -- the owner's body ------------------------------------------------------------------


async def test_the_owner_may_end_its_transaction_and_go_on(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        await session.commit()
        session.add(User(name="lost"))
        await session.flush()
        await session.rollback()
        session.add(User(name="closed"))
        await session.flush()
        await session.close()  # like a rollback; the session stays usable
        session.add(User(name="bob"))
    assert database.names() == ["ada", "bob"]


@pytest.mark.parametrize("how", ["commit", "rollback", "close"])
async def test_read_only_covers_every_transaction_of_the_scope(
    manager: AsyncSessionManager, database: Database, how: str
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
    with pytest.raises(DBAPIError):
        async with manager.session_scope(read_only=True) as session:
            await session.execute(select(User))
            await getattr(session, how)()
            session.add(User(name="bob"))
            await session.flush()
    assert database.names() == ["ada"]


async def test_the_isolation_level_covers_every_transaction_of_the_scope(
    manager: AsyncSessionManager, database: Database
) -> None:
    if database.is_postgres:
        level, query, chosen, default = (
            "SERIALIZABLE",
            "SHOW transaction_isolation",
            "serializable",
            "read committed",
        )
    else:
        level, query, chosen, default = ("READ UNCOMMITTED", "PRAGMA read_uncommitted", 1, 0)
    async with manager.session_scope(isolation_level=level) as session:
        assert (await session.execute(text(query))).scalar() == chosen
        for how in ("commit", "rollback", "close"):
            await getattr(session, how)()
            assert (await session.execute(text(query))).scalar() == chosen, how
    async with manager.session_scope() as session:  # the pool's connections are as before
        assert (await session.execute(text(query))).scalar() == default


async def test_no_connection_goes_back_to_the_pool_read_only(
    database: Database, config: SessionConfig
) -> None:
    # One connection: whatever a read-only scope's body did to it, the next scope gets it.
    manager = AsyncSessionManager(database.url, config=config, pool_size=1, max_overflow=0)
    try:
        for how in ("close", "commit", "rollback"):
            async with manager.session_scope(read_only=True) as session:
                await session.execute(select(User))
                await getattr(session, how)()
            async with manager.session_scope() as session:
                session.add(User(name=how))
        assert database.names() == ["close", "commit", "rollback"]
    finally:
        await manager.dispose()


async def test_the_body_cannot_commit_a_transaction_marked_rollback_only(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        try:
            async with manager.session_scope():
                raise Boom
        except Boom:
            pass
        with pytest.raises(TransactionRolledBackError):
            await session.commit()
        session.add(User(name="bob"))  # a new transaction, with nothing to hide
    assert database.names() == ["bob"]


# -- callbacks follow the work they were registered with --------------------------------


async def test_callbacks_follow_the_bodys_own_commit(
    manager: AsyncSessionManager, database: Database
) -> None:
    seen: list[str] = []
    with pytest.raises(Boom):
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            on_commit(lambda: seen.append("commit 1"))
            on_rollback(lambda: seen.append("rollback 1"))
            await session.commit()
            assert seen == ["commit 1"]
            on_commit(lambda: seen.append("commit 2"))
            on_rollback(lambda: seen.append("rollback 2"))
            raise Boom
    assert seen == ["commit 1", "rollback 2"]
    assert database.names() == ["ada"]


async def test_a_callback_of_the_bodys_commit_runs_outside_the_scope(
    manager: AsyncSessionManager, database: Database
) -> None:
    # As at the scope's exit: a scope the callback opens has a transaction of its
    # own, not the next transaction of the scope that committed.
    sessions: list[AsyncSession] = []

    async def audit() -> None:
        async with manager.session_scope() as other:
            sessions.append(other)
            other.add(User(name="audit"))

    with pytest.raises(Boom):
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            on_commit(audit)
            await session.commit()
            assert current_session() is session
            session.add(User(name="lost"))
            raise Boom
    assert sessions and sessions[0] is not session
    assert database.names() == ["ada", "audit"]


@pytest.mark.parametrize("how", ["rollback", "close"])
async def test_callbacks_follow_the_bodys_own_rollback(
    manager: AsyncSessionManager, database: Database, how: str
) -> None:
    seen: list[str] = []
    async with manager.session_scope() as session:
        session.add(User(name="lost"))
        on_commit(lambda: seen.append("commit 1"))
        on_rollback(lambda: seen.append("rollback 1"))
        await getattr(session, how)()
        assert seen == ["rollback 1"]
        session.add(User(name="bob"))
        on_commit(lambda: seen.append("commit 2"))
    assert seen == ["rollback 1", "commit 2"]
    assert database.names() == ["bob"]


class Flaky(Exception):
    pass


async def test_a_function_that_committed_part_of_its_work_is_not_re_run(
    manager: AsyncSessionManager, database: Database
) -> None:
    attempts = 0

    @manager.with_session(retry_attempts=2, retry_on=lambda error: isinstance(error, Flaky))
    async def transfer(session: AsyncSession) -> None:
        nonlocal attempts
        attempts += 1
        session.add(User(name="step 1"))
        await session.commit()
        raise Flaky("after the body's own commit")

    with pytest.raises(Flaky) as raised:
        await transfer()
    assert attempts == 1  # a re-run would have committed step 1 again
    assert "committed part of its work itself" in "\n".join(raised.value.__notes__)
    assert database.names() == ["step 1"]


# -- sessionscope.Rollback -------------------------------------------------------------


async def test_rollback_leaving_the_owner_is_a_quiet_rollback(
    manager: AsyncSessionManager, database: Database
) -> None:
    seen: list[str] = []
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        on_rollback(lambda: seen.append("rollback"))
        raise Rollback
    assert database.count() == 0
    assert seen == ["rollback"]


async def test_rollback_leaving_a_joined_scope_goes_up_to_the_owner(
    manager: AsyncSessionManager, database: Database
) -> None:
    reached: list[str] = []
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
        async with manager.session_scope():
            raise Rollback
        reached.append("the caller's body goes on")  # it does not: the owner swallows it
    assert reached == []
    assert database.count() == 0


async def test_rollback_swallowed_on_its_way_up_still_rolls_back_loudly(
    manager: AsyncSessionManager, database: Database
) -> None:
    with pytest.raises(TransactionRolledBackError):
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
            try:
                async with manager.session_scope():
                    raise Rollback
            except Rollback:
                pass
    assert database.count() == 0


async def test_rollback_in_a_nested_scope_rolls_back_its_savepoint_only(
    manager: AsyncSessionManager, database: Database
) -> None:
    async with manager.session_scope() as outer:
        outer.add(User(name="ada"))
        async with manager.session_scope(propagation="nested") as inner:
            inner.add(User(name="bob"))
            await inner.flush()
            raise Rollback
        outer.add(User(name="cid"))
    assert database.names() == ["ada", "cid"]


async def test_a_decorated_function_that_raises_rollback_returns_none(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> str:
        session.add(User(name=name))
        if name == "bad":
            raise Rollback
        return name

    assert await create_user("ada") == "ada"
    assert await create_user("bad") is None
    assert database.names() == ["ada"]


# -- copies of a scope's context never join it ---------------------------------------


async def test_code_started_in_a_scope_that_runs_after_it_opens_its_own(
    manager: AsyncSessionManager, database: Database
) -> None:
    ended = Event()

    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> AsyncSession:
        session.add(User(name=name))
        return session

    async def later() -> AsyncSession:
        await wait_for_event(ended)
        return await create_user("later")

    async with manager.session_scope() as outer:
        started = start_in_copy(later)
    ended.set()
    assert await finish(started) is not outer
    assert database.names() == ["later"]


async def test_a_copy_of_an_ended_scopes_context_sees_no_scope(
    manager: AsyncSessionManager,
) -> None:
    async def current() -> Any:
        try:
            return current_session()
        except NoActiveSessionError:
            return None

    async with manager.session_scope():
        context = contextvars.copy_context()
    assert await run_in(context, current) is None


async def test_copies_of_a_scopes_context_never_share_its_session(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> AsyncSession:
        session.add(User(name=name))
        await session.flush()
        await sleep(0.05)  # all three at once
        return session

    async with manager.session_scope() as outer:
        started = [start_in_copy(lambda n=n: create_user("worker %d" % n)) for n in range(3)]
        sessions = [await finish(handle) for handle in started]
    assert outer not in sessions
    assert len({id(session) for session in sessions}) == 3
    assert database.names() == ["worker 0", "worker 1", "worker 2"]


# -- pools that give every session the same connection (in-memory SQLite) -----------


@pytest.fixture
async def memory_manager(config: SessionConfig) -> AsyncIterator[AsyncSessionManager]:
    manager = AsyncSessionManager(MEMORY_URL, config=config)
    await create_tables(manager.engine)
    yield manager
    await manager.dispose()


async def _count_in(manager: AsyncSessionManager) -> int:
    async with manager.session_scope() as session:
        return int((await session.execute(select(func.count()).select_from(User))).scalar_one())


async def test_in_memory_requires_new_inside_a_scope_is_refused(
    memory_manager: AsyncSessionManager,
) -> None:
    with pytest.raises(Boom):
        async with memory_manager.session_scope() as outer:
            outer.add(User(name="ada"))
            with pytest.raises(ConfigurationError, match=r"requires_new.*in-memory"):
                async with memory_manager.session_scope(propagation="requires_new") as audit:
                    audit.add(User(name="audit"))
            raise Boom
    assert await _count_in(memory_manager) == 0
    async with memory_manager.session_scope(propagation="requires_new") as alone:
        alone.add(User(name="alone"))  # with nothing around it, it is a scope like any other
    assert await _count_in(memory_manager) == 1


async def test_in_memory_concurrent_scopes_take_turns(
    memory_manager: AsyncSessionManager,
) -> None:
    async def worker(n: int) -> None:
        async with memory_manager.session_scope() as session:
            session.add(User(name="worker %d" % n))
            await session.flush()
            await sleep(0.001)

    outcomes = await run_concurrently(*[lambda n=n: worker(n) for n in range(20)])
    assert [o for o in outcomes if isinstance(o, BaseException)] == []
    assert await _count_in(memory_manager) == 20


async def test_in_memory_a_scope_started_inside_another_waits_boundedly(
    config: SessionConfig,
) -> None:
    # Code started inside a scope opens its own, which waits for the only connection:
    # held by the scope it was started in, until that scope exits. The wait ends.
    manager = AsyncSessionManager(MEMORY_URL, config=config, pool_timeout=0.2)
    await create_tables(manager.engine)

    async def worker() -> None:
        async with manager.session_scope() as session:
            session.add(User(name="never"))

    try:
        async with manager.session_scope():
            handle = start_in_copy(worker)
            with pytest.raises(PoolTimeoutError, match="only connection of an in-memory"):
                await finish(handle)
        assert await _count_in(manager) == 0
    finally:
        await manager.dispose()
