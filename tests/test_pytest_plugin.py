"""The pytest plugin, used from a real pytest run (pytester, in a subprocess, so
that it is found through the package's entry point as a user's run finds it)."""

from __future__ import annotations

import importlib.metadata
import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

CONFTEST = """
import os

import pytest
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionscope import AsyncSessionManager, SessionManager


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


@pytest.fixture(scope="session")
def sessionscope_managers(tmp_path_factory):
    path = tmp_path_factory.mktemp("db") / "app.db"
    sync_url = os.environ.get("APP_SYNC_URL", f"sqlite:///{path}")
    async_url = os.environ.get("APP_ASYNC_URL", f"sqlite+aiosqlite:///{path}")
    sync_manager = SessionManager(sync_url)
    Base.metadata.drop_all(sync_manager.engine)
    Base.metadata.create_all(sync_manager.engine)
    with sync_manager.session_scope() as session:
        session.add(Item(name="fixture"))  # committed before any isolation
    async_manager = AsyncSessionManager(async_url)
    yield [sync_manager, async_manager]
    Base.metadata.drop_all(sync_manager.engine)
    sync_manager.dispose()
"""

TESTS = """
import httpx2
import pytest
from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from sessionscope.fastapi import session_dependency
from conftest import Item


def count(manager):
    with manager.session_scope() as session:
        return session.scalar(select(func.count()).select_from(Item))


@pytest.mark.parametrize("name", ["one", "two"])
def test_sync_writes_are_rolled_back(sessionscope_isolation, sessionscope_managers, name):
    sync_manager = sessionscope_managers[0]

    @sync_manager.with_session
    def add(session, name):
        session.add(Item(name=name))
        session.commit()  # as production code does

    add(name)
    assert count(sync_manager) == 2  # the fixture's row and this test's


@pytest.mark.parametrize("name", ["one", "two"])
async def test_async_writes_are_rolled_back(
    sessionscope_async_isolation, sessionscope_managers, name
):
    async_manager = sessionscope_managers[1]
    async with async_manager.session_scope() as session:
        session.add(Item(name=name))
    async with async_manager.session_scope() as session:
        assert await session.scalar(select(func.count()).select_from(Item)) == 2


@pytest.mark.parametrize("name", ["one", "two"])
async def test_a_fastapi_app_through_asgi_transport(
    sessionscope_async_isolation, sessionscope_managers, name
):
    async_manager = sessionscope_managers[1]
    app = FastAPI()
    SessionDep = session_dependency(async_manager)

    @app.post("/items/{name}")
    async def create(name: str, session: SessionDep) -> dict:
        session.add(Item(name=name))
        await session.flush()
        return {"count": await session.scalar(select(func.count()).select_from(Item))}

    transport = httpx2.ASGITransport(app=app)
    async with httpx2.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.post(f"/items/{name}")
    assert response.status_code == 200
    assert response.json() == {"count": 2}


def test_starlette_testclient_with_an_async_manager_says_what_to_use(
    sessionscope_async_isolation, sessionscope_managers
):
    from fastapi.testclient import TestClient

    async_manager = sessionscope_managers[1]
    app = FastAPI()
    SessionDep = session_dependency(async_manager)

    @app.get("/")
    async def read(session: SessionDep) -> dict:
        return {}

    with TestClient(app, raise_server_exceptions=True) as client:
        with pytest.raises(Exception, match="ASGITransport"):
            client.get("/")


def test_nothing_was_left_behind(sessionscope_managers):
    assert count(sessionscope_managers[0]) == 1
"""

INI = """
[pytest]
asyncio_mode = auto
asyncio_default_fixture_loop_scope = session
asyncio_default_test_loop_scope = session
"""


def test_the_plugin_is_registered_by_entry_point() -> None:
    entry_points = importlib.metadata.entry_points(group="pytest11")
    assert "sessionscope.pytest_plugin" in {e.value for e in entry_points}


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_plugin_isolates_each_test(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    if backend == "postgres":  # psycopg for the sync manager, asyncpg for the async one
        server = request.getfixturevalue("pg_server")
        monkeypatch.setenv("APP_SYNC_URL", server.url("psycopg"))
        monkeypatch.setenv("APP_ASYNC_URL", server.url("asyncpg"))
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_app=TESTS)
    pytester.makeini(INI)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=8)


def test_without_the_managers_the_fixture_says_what_to_define(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_nothing="def test_it(sessionscope_isolation):\n    pass\n",
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*define a fixture named sessionscope_managers*"])


def test_the_plugin_is_inert_until_used(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_it():\n    assert True\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=1)


MYAPP_DB = """
import os
import tempfile

from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionscope import SessionManager


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "readme_users"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


_default = "sqlite:///" + os.path.join(tempfile.mkdtemp(), "app.db")
manager = SessionManager(os.environ.get("APP_SYNC_URL", _default))
Base.metadata.drop_all(manager.engine)
Base.metadata.create_all(manager.engine)


@manager.with_session
def signup(session, name):
    session.add(User(name=name))
    session.commit()  # as production code does
"""

README_TESTS = """
import pytest
from sqlalchemy import func, select

from myapp.db import User, manager, signup


@pytest.mark.parametrize("run", [1, 2])
def test_signup(run):  # no fixture asked for: the README's conftest isolates every test
    signup("ada")  # a unique name: the second run fails if the first one's row survived
    with manager.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(User)) == 1
"""


def readme_conftest() -> str:
    """The conftest.py of the README's "Testing your code", as printed there."""
    readme = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(# conftest\.py\n.*?)```", readme, flags=re.DOTALL)
    assert len(blocks) == 1, "the README shows one conftest.py"
    return blocks[0]


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_the_readmes_conftest_runs_as_written(
    pytester: pytest.Pytester,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
    backend: str,
) -> None:
    if backend == "postgres":
        monkeypatch.setenv("APP_SYNC_URL", request.getfixturevalue("pg_server").url("psycopg"))
    pytester.mkpydir("myapp")
    pytester.path.joinpath("myapp", "db.py").write_text(MYAPP_DB)
    pytester.makeconftest(readme_conftest())
    pytester.makepyfile(test_readme=README_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=2)
