"""The SQLAlchemy internals the hot path reads directly, so that an upgrade that
renames them fails here, by name, rather than changing behaviour quietly.

``has_pending_changes`` reads ``Session._new``, ``Session._deleted`` and
``IdentityMap._modified`` (SQLAlchemy's own ``_is_clean()``); ``close_if_idle``
reads ``Session._transaction``. Both compat modules are checked, each with its
own driver on a SQLite file.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import Session

from sessionscope import _async_compat, _sync_compat
from sessionscope._sync.session import session_class
from tests.models import Base, User


def _pending_states(session: Session) -> list[bool]:
    """has_pending_changes() after each of: nothing, add, commit, change, commit, delete."""
    seen = [_sync_compat.has_pending_changes(session)]
    user = User(name="ada")
    session.add(user)
    seen.append(_sync_compat.has_pending_changes(session))
    session.commit()
    seen.append(_sync_compat.has_pending_changes(session))
    user.name = "bob"
    seen.append(_sync_compat.has_pending_changes(session))
    session.commit()
    session.delete(user)
    seen.append(_sync_compat.has_pending_changes(session))
    return seen


EXPECTED = [False, True, False, True, True]


def test_sync_session_internals(tmp_path: Path) -> None:
    engine = create_engine("sqlite:///%s" % (tmp_path / "db.sqlite"))
    Base.metadata.create_all(engine)
    try:
        session = session_class(Session)(engine, expire_on_commit=False)  # as managers make
        assert _pending_states(session) == EXPECTED
        session.rollback()
        assert session.in_transaction() is (session._transaction is not None)
        session.connection()
        assert _sync_compat.close_if_idle(session) is False  # holds a connection
        session.commit()
        assert _sync_compat.close_if_idle(session) is True
        assert engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    finally:
        engine.dispose()


def test_async_session_internals(tmp_path: Path) -> None:
    async def main() -> None:
        engine = create_async_engine("sqlite+aiosqlite:///%s" % (tmp_path / "db.sqlite"))
        async with engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)
        try:
            session = AsyncSession(engine, expire_on_commit=False)
            seen = [_async_compat.has_pending_changes(session)]
            user = User(name="ada")
            session.add(user)
            seen.append(_async_compat.has_pending_changes(session))
            await session.commit()
            seen.append(_async_compat.has_pending_changes(session))
            user.name = "bob"
            seen.append(_async_compat.has_pending_changes(session))
            await session.commit()
            await session.delete(user)
            seen.append(_async_compat.has_pending_changes(session))
            assert seen == EXPECTED
            await session.rollback()
            await session.connection()
            assert _async_compat.close_if_idle(session) is False  # holds a connection
            await session.commit()
            assert _async_compat.close_if_idle(session) is True
            assert engine.sync_engine.pool.checkedout() == 0  # type: ignore[attr-defined]
        finally:
            await engine.dispose()

    asyncio.run(main())
