"""with_session: injection, joining, caller-passed sessions, signatures, bad input."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from sessionscope import ConfigurationError, TransactionRolledBackError
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import IS_ASYNC, AsyncSession
from tests.models import User
from tests.support import (
    Database,
    async_generator_function,
    coroutine_function,
    generator_function,
    plain_function,
)


class Boom(Exception):
    pass


async def test_bare_decorator_injects_a_session_and_commits(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> User:
        """Create a user."""
        user = User(name=name)
        session.add(user)
        return user

    user = await create_user(name="ada")
    assert user.name == "ada" and user.id is not None
    assert database.names() == ["ada"]
    assert create_user.__name__ == "create_user"
    assert create_user.__doc__ == "Create a user."
    assert list(inspect.signature(create_user).parameters) == ["name"]


async def test_an_exception_rolls_back_and_passes_through(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))
        await session.flush()
        raise Boom

    with pytest.raises(Boom):
        await create_user("ada")
    assert database.count() == 0


async def test_options_are_applied(manager: AsyncSessionManager, database: Database) -> None:
    @manager.with_session(propagation="nested")
    async def try_create(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))
        await session.flush()
        if name == "bad":
            raise Boom

    async with manager.session_scope():
        await try_create("ada")
        with pytest.raises(Boom):
            await try_create("bad")
    assert database.names() == ["ada"]


async def test_a_call_inside_a_scope_joins_it(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def which_session(session: AsyncSession) -> AsyncSession:
        return session

    async with manager.session_scope() as outer:
        assert await which_session() is outer


async def test_a_session_of_an_active_scope_passed_in_is_joined(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> AsyncSession:
        session.add(User(name=name))
        if name == "bad":
            raise Boom
        return session

    async with manager.session_scope() as outer:
        assert await create_user(outer, "ada") is outer
        assert await create_user(session=outer, name="bob") is outer
        assert database.count() == 0  # not committed by the decorator
    assert database.names() == ["ada", "bob"]
    with pytest.raises(TransactionRolledBackError):
        async with manager.session_scope() as outer:
            try:
                await create_user(session=outer, name="bad")
            except Boom:
                pass
    assert database.names() == ["ada", "bob"]


async def test_a_foreign_session_is_used_as_is(
    manager: AsyncSessionManager, database: Database
) -> None:
    @manager.with_session
    async def create_user(session: AsyncSession, name: str) -> None:
        session.add(User(name=name))

    foreign = AsyncSession(manager.engine)  # as an old get_db() would make it
    try:
        await create_user(session=foreign, name="ada")
        await create_user(foreign, "bob")
        assert database.count() == 0  # neither committed
        await foreign.commit()  # nor closed: the owner goes on using it
    finally:
        await foreign.close()
    assert database.names() == ["ada", "bob"]


async def test_loose_annotations_are_accepted(manager: AsyncSessionManager) -> None:
    @manager.with_session
    async def any_session(session: Any) -> int:
        return 1

    @manager.with_session
    async def object_session(session: object) -> int:
        return 2

    assert (await any_session(), await object_session()) == (1, 2)


async def test_retry_options_are_accepted(manager: AsyncSessionManager) -> None:
    @manager.with_session(retry_attempts=0, retry_delay=0.0, idempotent=True, retry_on=None)
    async def nothing(session: AsyncSession) -> int:
        return 1

    assert await nothing() == 1


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"propogation": "nested"}, "propogation"),
        ({"propagation": "sometimes"}, "sometimes"),
        ({"retry_attempts": -1}, "-1"),
        ({"retry_delay": "soon"}, "soon"),
        ({"isolation_level": "CHAOS"}, "CHAOS"),
        ({"fallback": 42}, "42"),
    ],
)
async def test_bad_options_fail_at_decoration(
    manager: AsyncSessionManager, options: dict[str, Any], named: str
) -> None:
    async def fn(session: AsyncSession) -> None:
        pass

    with pytest.raises(ConfigurationError, match=named):
        manager.with_session(**options)(fn)


async def test_functions_that_cannot_take_the_session_fail_at_decoration(
    manager: AsyncSessionManager,
) -> None:
    async def no_parameters() -> None:
        pass

    async def keyword_only(*, session: AsyncSession) -> None:
        pass

    async def wrong_annotation(session: int) -> None:
        pass

    for fn in (no_parameters, keyword_only, wrong_annotation):
        with pytest.raises(TypeError, match=fn.__name__):
            manager.with_session(fn)  # type: ignore[call-overload]


async def test_a_function_of_the_other_flavour_fails_at_decoration(
    manager: AsyncSessionManager,
) -> None:
    wrong = plain_function if IS_ASYNC else coroutine_function
    with pytest.raises(TypeError, match="flavour"):
        manager.with_session(wrong)


async def test_generator_functions_fail_at_decoration(manager: AsyncSessionManager) -> None:
    for fn in (generator_function, async_generator_function):
        with pytest.raises(TypeError, match="%s is a generator function" % fn.__name__):
            manager.with_session(fn)  # type: ignore[call-overload]


def _repository(manager: AsyncSessionManager) -> Any:
    class Repository:
        prefix = "class "

        def __init__(self) -> None:
            self.prefix = "instance "

        @manager.with_session
        async def create(self, session: AsyncSession, name: str) -> AsyncSession:
            session.add(User(name=self.prefix + name))
            return session

        @manager.with_session
        @staticmethod
        async def above_static(session: AsyncSession, name: str) -> str:
            session.add(User(name="static " + name))
            return name

        @staticmethod
        @manager.with_session
        async def below_static(session: AsyncSession, name: str) -> str:
            session.add(User(name="static below " + name))
            return name

        @manager.with_session
        @classmethod
        async def above_class(cls, session: AsyncSession, name: str) -> str:
            session.add(User(name=cls.prefix + name))
            return name

        @classmethod
        @manager.with_session
        async def below_class(cls, session: AsyncSession, name: str) -> str:
            session.add(User(name=cls.prefix + "below " + name))
            return name

    return Repository


async def test_methods_get_the_session_after_self_or_cls(
    manager: AsyncSessionManager, database: Database
) -> None:
    repository = _repository(manager)
    instance = repository()
    await instance.create("ada")
    await instance.above_static("bob")
    await repository.above_static("cid")
    await instance.below_static("dan")
    await instance.above_class("eve")
    await repository.below_class("fay")
    assert database.names() == [
        "class below fay",
        "class eve",
        "instance ada",
        "static below dan",
        "static bob",
        "static cid",
    ]
    assert list(inspect.signature(instance.create).parameters) == ["name"]
    assert list(inspect.signature(repository.create).parameters) == ["self", "name"]


async def test_a_method_joins_a_session_passed_in(
    manager: AsyncSessionManager, database: Database
) -> None:
    instance = _repository(manager)()
    async with manager.session_scope() as outer:
        assert await instance.create(outer, "ada") is outer
        assert await instance.create(session=outer, name="bob") is outer
        assert database.count() == 0
    assert database.names() == ["instance ada", "instance bob"]
