"""FastAPI: one transaction per request, committed before the response is sent.

The async tests call ``async def`` endpoints through httpx's ASGI transport; the
generated sync twin calls ``def`` endpoints (run by FastAPI in its thread pool)
through Starlette's ``TestClient``, with a sync manager.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints'
# annotations, and string annotations naming a test's local ``SessionDep``
# could not be resolved.
import functools
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

import pytest
from fastapi import BackgroundTasks, Depends, FastAPI, HTTPException
from sqlalchemy import event, func, select, table, text
from sqlalchemy.exc import IntegrityError

import sessionscope.fastapi
from sessionscope import ConfigurationError, SessionConfig
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import AsyncSession, sleep, sync_engine_of
from sessionscope.fastapi import session_dependency, session_depends
from tests._async_compat import client_for, run_concurrently
from tests.models import AuditRecord, User
from tests.support import Database, enable_sqlite_foreign_keys


class Boom(Exception):
    pass


@pytest.fixture
async def deferred_table(manager: AsyncSessionManager, database: Database) -> AsyncIterator[str]:
    """A table whose foreign key to users is checked only at COMMIT.

    PostgreSQL enforces foreign keys; SQLite only on connections that turn them
    on, as the manager's connections do in these tests.
    """
    if not database.is_postgres:
        event.listen(sync_engine_of(manager.engine), "connect", enable_sqlite_foreign_keys)
    key = "SERIAL" if database.is_postgres else "INTEGER"
    drop = "DROP TABLE IF EXISTS deferred_posts"
    with database.observer.begin() as connection:
        connection.execute(text(drop))
        connection.execute(
            text(
                "CREATE TABLE deferred_posts (id %s PRIMARY KEY, user_id INTEGER NOT NULL "
                "REFERENCES users (id) DEFERRABLE INITIALLY DEFERRED)" % key
            )
        )
    yield "deferred_posts"
    await manager.dispose()
    with database.observer.begin() as connection:  # users is dropped by the next test
        connection.execute(text(drop))


def checked_out(manager: AsyncSessionManager) -> int:
    return int(manager.engine.pool.checkedout())  # type: ignore[attr-defined]


# -- commit and rollback -------------------------------------------------------------


async def test_a_request_commits_on_success(
    manager: AsyncSessionManager, database: Database
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()

    @app.post("/users")
    async def create_user(session: SessionDep, name: str) -> dict[str, Any]:
        user = User(name=name)
        session.add(user)
        await session.flush()
        return {"id": user.id, "name": user.name}

    async with client_for(app) as client:
        response = await client.post("/users", params={"name": "ada"})
    assert response.status_code == 200, response.text
    assert response.json()["name"] == "ada"
    assert database.names() == ["ada"]
    assert manager.monitor.snapshot()["transactions"]["committed"] == 1


async def test_an_http_exception_rolls_back(
    manager: AsyncSessionManager, database: Database
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()

    @app.post("/users")
    async def create_user(session: SessionDep, name: str) -> None:
        session.add(User(name=name))
        await session.flush()
        raise HTTPException(status_code=409, detail="%s is taken" % name)

    async with client_for(app) as client:
        response = await client.post("/users", params={"name": "ada"})
    assert response.status_code == 409
    assert response.json() == {"detail": "ada is taken"}
    assert database.count() == 0
    assert manager.monitor.snapshot()["transactions"]["rolled_back"] == 1


async def test_an_unhandled_error_rolls_back_and_gives_500(
    manager: AsyncSessionManager, database: Database
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()

    @app.post("/users")
    async def create_user(session: SessionDep, name: str) -> None:
        session.add(User(name=name))
        await session.flush()
        raise Boom

    async with client_for(app, raise_server_exceptions=False) as client:
        response = await client.post("/users", params={"name": "ada"})
    assert response.status_code == 500
    assert database.count() == 0
    async with client_for(app) as client:
        with pytest.raises(Boom):  # the endpoint's own error, unchanged
            await client.post("/users", params={"name": "bob"})
    assert database.count() == 0


# -- the commit happens before the response --------------------------------------------


async def test_a_failed_commit_gives_500_and_stores_nothing(
    manager: AsyncSessionManager, database: Database, deferred_table: str
) -> None:
    """The endpoint succeeds; only COMMIT fails. The client must learn of it."""
    SessionDep = session_dependency(manager)
    app = FastAPI()
    endpoint_returned: list[str] = []

    @app.post("/posts")
    async def create_post(session: SessionDep, name: str) -> dict[str, Any]:
        session.add(User(name=name))
        # A dangling reference: accepted now, refused by the deferred check at COMMIT.
        await session.execute(text("INSERT INTO %s (user_id) VALUES (424242)" % deferred_table))
        endpoint_returned.append(name)
        return {"created": name}

    async with client_for(app, raise_server_exceptions=False) as client:
        response = await client.post("/posts", params={"name": "ada"})
    assert endpoint_returned == ["ada"]
    assert response.status_code == 500, "a lost write was answered %d %s" % (
        response.status_code,
        response.text,
    )
    assert database.count() == 0
    assert database.count(table(deferred_table)) == 0
    assert checked_out(manager) == 0


async def test_the_commit_error_is_what_fails_the_request(
    manager: AsyncSessionManager, database: Database, deferred_table: str
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()
    returned: list[bool] = []

    @app.post("/posts")
    async def create_post(session: SessionDep) -> dict[str, Any]:
        await session.execute(text("INSERT INTO %s (user_id) VALUES (424242)" % deferred_table))
        returned.append(True)
        return {"created": True}

    async with client_for(app) as client:
        with pytest.raises(IntegrityError):  # raised by COMMIT, after the endpoint returned
            await client.post("/posts")
    assert returned == [True]
    assert database.count(table(deferred_table)) == 0
    transactions = manager.monitor.snapshot()["transactions"]
    assert transactions["rolled_back"] == transactions["rolled_back_by_cause"]["commit_failed"] == 1


async def test_a_failed_commit_leaves_the_pool_usable(
    manager: AsyncSessionManager, database: Database, deferred_table: str
) -> None:
    """The next request after a failed COMMIT gets a clean connection."""
    SessionDep = session_dependency(manager)
    app = FastAPI()

    @app.post("/posts")
    async def create_post(session: SessionDep, dangling: bool) -> dict[str, Any]:
        if dangling:
            await session.execute(text("INSERT INTO %s (user_id) VALUES (424242)" % deferred_table))
        else:
            session.add(User(name="ada"))
        return {"dangling": dangling}

    async with client_for(app, raise_server_exceptions=False) as client:
        assert (await client.post("/posts", params={"dangling": True})).status_code == 500
        response = await client.post("/posts", params={"dangling": False})
    assert response.status_code == 200, response.text
    assert database.names() == ["ada"]


async def test_a_plain_depends_would_answer_200_for_a_lost_write(
    manager: AsyncSessionManager, database: Database, deferred_table: str
) -> None:
    """The pitfall session_dependency avoids, shown with the plain ``manager.get_db``:
    FastAPI runs a request-scoped dependency's exit code after the response."""
    app = FastAPI()

    @app.post("/posts")
    async def create_post(
        session: Annotated[AsyncSession, Depends(manager.get_db)],
    ) -> dict[str, Any]:
        await session.execute(text("INSERT INTO %s (user_id) VALUES (424242)" % deferred_table))
        return {"created": True}

    async with client_for(app, raise_server_exceptions=False) as client:
        response = await client.post("/posts")
    assert response.status_code == 200  # ... and yet:
    assert database.count(table(deferred_table)) == 0


# -- decorated functions in a request ----------------------------------------------------


async def test_a_decorated_helper_joins_the_request_session(
    manager: AsyncSessionManager, database: Database
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()
    threads: dict[str, int] = {}

    @manager.with_session
    async def add_user(session: AsyncSession, name: str) -> AsyncSession:
        threads["helper"] = threading.get_ident()
        session.add(User(name=name))
        await session.flush()
        return session

    @app.post("/users")
    async def create_users(session: SessionDep, name: str, fail: bool = False) -> dict[str, Any]:
        threads["endpoint"] = threading.get_ident()
        first = await add_user(name)
        second = await add_user(name + "-2")
        if fail:
            raise HTTPException(status_code=400, detail="no")
        return {"joined": first is session and second is session}

    async with client_for(app) as client:
        response = await client.post("/users", params={"name": "ada"})
        assert response.status_code == 200, response.text
        assert response.json() == {"joined": True}
        assert database.names() == ["ada", "ada-2"]
        assert threads["helper"] == threads["endpoint"]
        # The helpers' writes are the request's: they roll back with it.
        response = await client.post("/users", params={"name": "bob", "fail": True})
        assert response.status_code == 400
    assert database.names() == ["ada", "ada-2"]
    transactions = manager.monitor.snapshot()["transactions"]
    assert (transactions["committed"], transactions["rolled_back"]) == (1, 1)


async def test_a_sub_dependency_gets_the_same_session(
    manager: AsyncSessionManager, database: Database
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()

    class Users:
        def __init__(self, session: AsyncSession) -> None:
            self.session = session

        async def add(self, name: str) -> None:
            self.session.add(User(name=name))
            await self.session.flush()

    async def users_repository(session: SessionDep) -> Users:
        return Users(session)

    @app.post("/users")
    async def create_user(
        session: SessionDep, users: Annotated[Users, Depends(users_repository)], name: str
    ) -> dict[str, Any]:
        await users.add(name)
        return {"same": users.session is session}

    async with client_for(app) as client:
        response = await client.post("/users", params={"name": "ada"})
    assert response.json() == {"same": True}
    assert database.names() == ["ada"]
    assert manager.monitor.snapshot()["sessions"]["opened"] == 1


async def test_background_tasks_get_their_own_session(
    manager: AsyncSessionManager, database: Database
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()
    sessions: dict[str, AsyncSession] = {}
    seen_by_task: list[list[str]] = []

    @manager.with_session
    async def audit(session: AsyncSession, message: str) -> None:
        sessions["task"] = session
        seen_by_task.append(database.names())  # what the request had committed by then
        session.add(AuditRecord(message=message))

    @app.post("/users")
    async def create_user(session: SessionDep, name: str, tasks: BackgroundTasks) -> None:
        sessions["request"] = session
        session.add(User(name=name))
        tasks.add_task(audit, "created %s" % name)

    async with client_for(app) as client:
        response = await client.post("/users", params={"name": "ada"})
    assert response.status_code == 200, response.text
    assert sessions["task"] is not sessions["request"]
    assert seen_by_task == [["ada"]]  # the request committed before the task ran
    assert database.names() == ["ada"]
    assert database.count(AuditRecord) == 1
    snapshot = manager.monitor.snapshot()
    assert snapshot["sessions"]["opened"] == 2
    assert snapshot["transactions"]["committed"] == 2


# -- many requests at once ---------------------------------------------------------------


async def test_fifty_requests_in_flight_at_once(
    manager: AsyncSessionManager, database: Database
) -> None:
    SessionDep = session_dependency(manager)
    app = FastAPI()
    lock = threading.Lock()  # never held across an await
    in_flight = {"now": 0, "peak": 0}

    @app.post("/users")
    async def create_user(session: SessionDep, name: str) -> dict[str, Any]:
        with lock:
            in_flight["now"] += 1
            in_flight["peak"] = max(in_flight["peak"], in_flight["now"])
        await sleep(0.02)  # before the write: SQLite writers take turns
        session.add(User(name=name))
        await session.flush()
        with lock:
            in_flight["now"] -= 1
        return {"name": name}

    async with client_for(app) as client:
        responses = await run_concurrently(
            *(
                functools.partial(client.post, "/users", params={"name": "u%02d" % i})
                for i in range(50)
            )
        )
    errors = [response for response in responses if isinstance(response, BaseException)]
    assert errors == []
    assert [response.status_code for response in responses] == [200] * 50
    assert in_flight["peak"] > 1, "the requests never overlapped"
    assert database.count() == 50
    assert checked_out(manager) == 0
    snapshot = manager.monitor.snapshot()
    assert snapshot["sessions"]["active"] == 0
    assert snapshot["transactions"]["committed"] == 50


async def test_more_requests_than_threads_and_connections(
    database: Database, config: SessionConfig
) -> None:
    """Requests waiting for one of two connections must not starve those holding one.

    In sync endpoints, FastAPI's thread pool has 40 threads: if the request
    scopes waited for a connection (or SQLite's write lock) in those threads,
    and committed in them too, 120 requests would leave no thread to COMMIT with.
    """
    manager = AsyncSessionManager(
        database.url, config=config, pool_size=2, max_overflow=0, pool_timeout=10
    )
    try:
        SessionDep = session_dependency(manager)
        app = FastAPI()

        @app.post("/users")
        async def create_user(session: SessionDep, name: str) -> None:
            await sleep(0.005)
            session.add(User(name=name))
            await session.flush()

        async with client_for(app) as client:
            responses = await run_concurrently(
                *(
                    functools.partial(client.post, "/users", params={"name": "u%03d" % i})
                    for i in range(120)
                )
            )
        assert [getattr(r, "status_code", r) for r in responses] == [200] * 120
        assert database.count() == 120
        assert checked_out(manager) == 0
    finally:
        await manager.dispose()


# -- options ---------------------------------------------------------------------------


async def test_options_apply_to_the_request_scope(
    manager: AsyncSessionManager, database: Database
) -> None:
    ReadOnlyDep = session_dependency(manager, read_only=True)
    app = FastAPI()

    @app.get("/users/count")
    async def count_users(session: ReadOnlyDep) -> int:
        return int(await session.scalar(select(func.count()).select_from(User)) or 0)

    @app.post("/users")
    async def create_user(session: ReadOnlyDep, name: str) -> None:
        session.add(User(name=name))
        await session.flush()

    async with client_for(app, raise_server_exceptions=False) as client:
        assert (await client.get("/users/count")).json() == 0
        response = await client.post("/users", params={"name": "ada"})
        assert response.status_code == 500
        assert (await client.get("/users/count")).json() == 0
    assert database.count() == 0


@pytest.mark.parametrize(
    "options",
    [
        {"propagation": "sideways"},
        {"no_such_option": True},
        {"isolation_level": "SOMETIMES"},
        {"retry_attempts": 3},  # a with_session option: a request scope does not retry
    ],
    ids=["propagation", "unknown", "isolation", "retry"],
)
async def test_bad_options_fail_at_creation(
    manager: AsyncSessionManager, database: Database, options: dict[str, Any]
) -> None:
    with pytest.raises(ConfigurationError):
        session_dependency(manager, **options)
    with pytest.raises(ConfigurationError):
        session_depends(manager, **options)


def test_a_fastapi_without_dependency_scopes_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def old_depends(dependency: Any = None, *, use_cache: bool = True) -> Any:
        raise AssertionError("must not be called")

    monkeypatch.setattr(sessionscope.fastapi, "Depends", old_depends)
    with pytest.raises(ConfigurationError, match=r"0\.121"):
        session_depends(object())
