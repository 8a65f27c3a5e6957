# Generated from tests/_async/test_decorator.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""with_session: injection, joining, caller-passed sessions, signatures, bad input."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from sessionscope import ConfigurationError, TransactionRolledBackError
from sessionscope._sync import SessionManager
from sessionscope._sync_compat import IS_ASYNC, Session
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


def test_bare_decorator_injects_a_session_and_commits(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def create_user(session: Session, name: str) -> User:
        """Create a user."""
        user = User(name=name)
        session.add(user)
        return user

    user = create_user(name="ada")
    assert user.name == "ada" and user.id is not None
    assert database.names() == ["ada"]
    assert create_user.__name__ == "create_user"
    assert create_user.__doc__ == "Create a user."
    assert list(inspect.signature(create_user).parameters) == ["name"]


def test_an_exception_rolls_back_and_passes_through(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def create_user(session: Session, name: str) -> None:
        session.add(User(name=name))
        session.flush()
        raise Boom

    with pytest.raises(Boom):
        create_user("ada")
    assert database.count() == 0


def test_options_are_applied(manager: SessionManager, database: Database) -> None:
    @manager.with_session(propagation="nested")
    def try_create(session: Session, name: str) -> None:
        session.add(User(name=name))
        session.flush()
        if name == "bad":
            raise Boom

    with manager.session_scope():
        try_create("ada")
        with pytest.raises(Boom):
            try_create("bad")
    assert database.names() == ["ada"]


def test_a_call_inside_a_scope_joins_it(manager: SessionManager, database: Database) -> None:
    @manager.with_session
    def which_session(session: Session) -> Session:
        return session

    with manager.session_scope() as outer:
        assert which_session() is outer


def test_a_session_of_an_active_scope_passed_in_is_joined(
    manager: SessionManager, database: Database
) -> None:
    @manager.with_session
    def create_user(session: Session, name: str) -> Session:
        session.add(User(name=name))
        if name == "bad":
            raise Boom
        return session

    with manager.session_scope() as outer:
        assert create_user(outer, "ada") is outer
        assert create_user(session=outer, name="bob") is outer
        assert database.count() == 0  # not committed by the decorator
    assert database.names() == ["ada", "bob"]
    with pytest.raises(TransactionRolledBackError):
        with manager.session_scope() as outer:
            try:
                create_user(session=outer, name="bad")
            except Boom:
                pass
    assert database.names() == ["ada", "bob"]


def test_a_foreign_session_is_used_as_is(manager: SessionManager, database: Database) -> None:
    @manager.with_session
    def create_user(session: Session, name: str) -> None:
        session.add(User(name=name))

    foreign = Session(manager.engine)  # as an old get_db() would make it
    try:
        create_user(session=foreign, name="ada")
        create_user(foreign, "bob")
        assert database.count() == 0  # neither committed
        foreign.commit()  # nor closed: the owner goes on using it
    finally:
        foreign.close()
    assert database.names() == ["ada", "bob"]


def test_loose_annotations_are_accepted(manager: SessionManager) -> None:
    @manager.with_session
    def any_session(session: Any) -> int:
        return 1

    @manager.with_session
    def object_session(session: object) -> int:
        return 2

    assert (any_session(), object_session()) == (1, 2)


def test_retry_options_are_accepted(manager: SessionManager) -> None:
    @manager.with_session(retry_attempts=0, retry_delay=0.0, idempotent=True, retry_on=None)
    def nothing(session: Session) -> int:
        return 1

    assert nothing() == 1


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
def test_bad_options_fail_at_decoration(
    manager: SessionManager, options: dict[str, Any], named: str
) -> None:
    def fn(session: Session) -> None:
        pass

    with pytest.raises(ConfigurationError, match=named):
        manager.with_session(**options)(fn)


def test_functions_that_cannot_take_the_session_fail_at_decoration(
    manager: SessionManager,
) -> None:
    def no_parameters() -> None:
        pass

    def keyword_only(*, session: Session) -> None:
        pass

    def wrong_annotation(session: int) -> None:
        pass

    for fn in (no_parameters, keyword_only, wrong_annotation):
        with pytest.raises(TypeError, match=fn.__name__):
            manager.with_session(fn)  # type: ignore[call-overload]


def test_a_function_of_the_other_flavour_fails_at_decoration(
    manager: SessionManager,
) -> None:
    wrong = plain_function if IS_ASYNC else coroutine_function
    with pytest.raises(TypeError, match="flavour"):
        manager.with_session(wrong)


def test_generator_functions_fail_at_decoration(manager: SessionManager) -> None:
    for fn in (generator_function, async_generator_function):
        with pytest.raises(TypeError, match="%s is a generator function" % fn.__name__):
            manager.with_session(fn)  # type: ignore[call-overload]


def _repository(manager: SessionManager) -> Any:
    class Repository:
        prefix = "class "

        def __init__(self) -> None:
            self.prefix = "instance "

        @manager.with_session
        def create(self, session: Session, name: str) -> Session:
            session.add(User(name=self.prefix + name))
            return session

        @manager.with_session
        @staticmethod
        def above_static(session: Session, name: str) -> str:
            session.add(User(name="static " + name))
            return name

        @staticmethod
        @manager.with_session
        def below_static(session: Session, name: str) -> str:
            session.add(User(name="static below " + name))
            return name

        @manager.with_session
        @classmethod
        def above_class(cls, session: Session, name: str) -> str:
            session.add(User(name=cls.prefix + name))
            return name

        @classmethod
        @manager.with_session
        def below_class(cls, session: Session, name: str) -> str:
            session.add(User(name=cls.prefix + "below " + name))
            return name

    return Repository


def test_methods_get_the_session_after_self_or_cls(
    manager: SessionManager, database: Database
) -> None:
    repository = _repository(manager)
    instance = repository()
    instance.create("ada")
    instance.above_static("bob")
    repository.above_static("cid")
    instance.below_static("dan")
    instance.above_class("eve")
    repository.below_class("fay")
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


def test_a_method_joins_a_session_passed_in(manager: SessionManager, database: Database) -> None:
    instance = _repository(manager)()
    with manager.session_scope() as outer:
        assert instance.create(outer, "ada") is outer
        assert instance.create(session=outer, name="bob") is outer
        assert database.count() == 0
    assert database.names() == ["instance ada", "instance bob"]
