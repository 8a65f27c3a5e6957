"""Managers: what they can be bound to, what they own, and the errors for bad binds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from sessionscope import ConfigurationError, SessionConfig
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import (
    IS_ASYNC,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from tests.models import User
from tests.support import ASYNC_DRIVER, SYNC_DRIVER, Database, engine_of_the_other_flavour


class Boom(Exception):
    pass


async def test_a_manager_made_from_a_url_disposes_its_engine(database: Database) -> None:
    async with AsyncSessionManager(database.url, pool_size=2) as manager:
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
        assert manager.monitor.pool_status()["size"] == 2
    assert database.names() == ["ada"]
    assert manager.engine.pool.checkedin() == 0  # type: ignore[attr-defined]


async def test_a_borrowed_engine_is_never_disposed(database: Database) -> None:
    engine = create_async_engine(database.url)
    try:
        manager = AsyncSessionManager(engine)
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
        await manager.dispose()
        async with engine.connect() as connection:  # still usable, pool intact
            assert (await connection.execute(select(User.name))).scalars().all() == ["ada"]
    finally:
        await engine.dispose()


async def test_a_borrowed_sessionmaker_keeps_its_settings_and_is_not_changed(
    database: Database,
) -> None:
    class AppSession(AsyncSession):
        pass

    engine = create_async_engine(database.url)
    session_local = async_sessionmaker(engine, class_=AppSession, info={"app": "mine"})
    try:
        manager = AsyncSessionManager(session_local)
        async with manager.session_scope() as session:
            assert isinstance(session, AppSession)
            assert session.info["app"] == "mine"
            user = User(name="ada")
            session.add(user)
        assert user.name == "ada"  # not expired on commit
        assert session_local.kw["expire_on_commit"] is True  # the app's maker is untouched
        # Savepoints are real on the borrowed engine too.
        with pytest.raises(Boom):
            async with manager.session_scope() as session:
                async with manager.session_scope(propagation="nested") as inner:
                    inner.add(User(name="bob"))
                raise Boom
        assert database.names() == ["ada"]
        await manager.dispose()
    finally:
        await engine.dispose()


async def test_a_session_class_with_its_own_connection_method_gets_it_called(
    database: Database,
) -> None:
    # A scope takes its connection before its body runs, through the session class's
    # connection() when the application's class has one of its own.
    calls = []

    class AppSession(AsyncSession):
        async def connection(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("connection")
            return await super().connection(*args, **kwargs)

    engine = create_async_engine(database.url)
    try:
        manager = AsyncSessionManager(async_sessionmaker(engine, class_=AppSession))
        async with manager.session_scope() as session:
            assert calls == ["connection"]
            session.add(User(name="ada"))
        assert database.names() == ["ada"]
        await manager.dispose()
    finally:
        await engine.dispose()


async def test_the_engine_used_directly_keeps_its_own_transactions(database: Database) -> None:
    # The SQLite BEGIN lives in the manager's sessions, not in the engine: a
    # pooled connection used directly afterwards still rolls back as before.
    async with AsyncSessionManager(database.url, pool_size=1, max_overflow=0) as manager:
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
        async with manager.engine.connect() as connection:  # the same pooled connection
            await connection.execute(insert(User).values(name="bob"))
            await connection.rollback()
            await connection.execute(insert(User).values(name="cid"))
            await connection.commit()
    assert database.names() == ["ada", "cid"]


async def test_a_sessionmaker_without_an_engine_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="bind"):
        AsyncSessionManager(async_sessionmaker())


async def test_a_bind_of_the_other_flavour_is_refused(database: Database) -> None:
    other = engine_of_the_other_flavour(database, IS_ASYNC)
    expected = "use SessionManager" if IS_ASYNC else "use AsyncSessionManager"
    with pytest.raises(ConfigurationError, match=expected):
        AsyncSessionManager(other)


async def test_a_url_with_a_driver_of_the_other_flavour_is_refused(tmp_path: Path) -> None:
    urls = (
        ["sqlite:///%s" % (tmp_path / "x.db")]
        if IS_ASYNC
        else ["sqlite+aiosqlite:///%s" % (tmp_path / "x.db"), "postgresql+asyncpg://u@h/db"]
    )
    for url in urls:
        with pytest.raises(ConfigurationError, match="driver"):
            AsyncSessionManager(url)


@pytest.mark.parametrize(
    ("bind", "named"),
    [(42, "42"), ("not a url", "not a url"), ("nosuchdb://x", "nosuchdb")],
)
async def test_bad_binds_are_refused(bind: object, named: str) -> None:
    with pytest.raises(ConfigurationError, match=named):
        AsyncSessionManager(bind)  # type: ignore[arg-type]


async def test_engine_options_need_a_url(database: Database) -> None:
    engine = create_async_engine(database.url)
    try:
        with pytest.raises(ConfigurationError, match="pool_size"):
            AsyncSessionManager(engine, pool_size=3)
    finally:
        await engine.dispose()


async def test_unknown_engine_options_are_named(database: Database) -> None:
    with pytest.raises(ConfigurationError, match="pool_sise"):
        AsyncSessionManager(database.url, pool_sise=3)


async def test_config_must_be_a_session_config(database: Database) -> None:
    with pytest.raises(ConfigurationError, match="SessionConfig"):
        AsyncSessionManager(database.url, config={"auto_commit": False})  # type: ignore[arg-type]


async def test_the_config_sets_the_defaults_of_every_scope(database: Database) -> None:
    async with AsyncSessionManager(
        database.url, config=SessionConfig(auto_commit=False)
    ) as manager:
        async with manager.session_scope() as session:
            session.add(User(name="ada"))
        async with manager.session_scope(auto_commit=True) as session:
            session.add(User(name="bob"))
    assert database.names() == ["bob"]


async def test_unknown_scope_options_are_named(manager: AsyncSessionManager) -> None:
    with pytest.raises(ConfigurationError, match="propogation"):
        manager.session_scope(propogation="nested")  # type: ignore[call-arg]
    with pytest.raises(ConfigurationError, match="sometimes"):
        manager.session_scope(propagation="sometimes")  # type: ignore[arg-type]


async def test_get_db_commits_or_rolls_back(
    manager: AsyncSessionManager, database: Database
) -> None:
    dependency = manager.get_db()
    session = await dependency.__anext__()
    session.add(User(name="ada"))
    with pytest.raises(StopAsyncIteration):
        await dependency.__anext__()
    assert database.names() == ["ada"]

    dependency = manager.get_db()
    session = await dependency.__anext__()
    session.add(User(name="bob"))
    with pytest.raises(Boom):
        await dependency.athrow(Boom())
    assert database.names() == ["ada"]


async def test_the_name_and_snapshot_never_show_the_password() -> None:
    driver = ASYNC_DRIVER["asyncpg"] if IS_ASYNC else SYNC_DRIVER["psycopg"]
    async with AsyncSessionManager(driver + "://app:s3cret-pw@127.0.0.1:1/db") as manager:
        assert "s3cret-pw" not in manager.name
        assert "s3cret-pw" not in repr(manager)
        assert "s3cret-pw" not in json.dumps(manager.monitor.snapshot())
