# Generated from tests/_async/test_default_manager.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""Module-level functions on the default manager, and the original request's examples."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from sessionscope import ConfigurationError, set_default_manager
from sessionscope._sync import SessionManager, session_scope, with_session
from sessionscope._sync_compat import Session
from tests.models import User
from tests.support import Database


# Decorated at import time, before any manager exists, as application modules are.
@with_session
def create_user(session: Session, name: str) -> User:
    user = User(name=name)
    session.add(user)
    return user


@with_session(propagation="nested")
def create_user_in_savepoint(session: Session, name: str) -> None:
    session.add(User(name=name))


def test_the_original_examples_run_as_written(manager: SessionManager, database: Database) -> None:
    set_default_manager(manager)

    user = create_user(name="ada")
    assert user.name == "ada"

    with session_scope() as session:
        result = session.execute(select(User))
        session.commit()
        assert [u.name for u in result.scalars()] == ["ada"]
    assert database.names() == ["ada"]


def test_module_level_functions_take_options(manager: SessionManager, database: Database) -> None:
    set_default_manager(manager)
    with session_scope() as outer:
        create_user_in_savepoint("ada")
        with session_scope(propagation="requires_new") as inner:
            assert inner is not outer
    assert database.names() == ["ada"]


def test_without_a_default_manager_the_error_says_what_to_call() -> None:
    with pytest.raises(ConfigurationError, match="set_default_manager"):
        session_scope()
    with pytest.raises(ConfigurationError, match="set_default_manager"):
        create_user(name="ada")


def test_set_default_manager_refuses_anything_else() -> None:
    with pytest.raises(ConfigurationError, match="42"):
        set_default_manager(42)
