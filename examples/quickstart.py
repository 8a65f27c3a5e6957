"""The original request's four examples, runnable: ``python examples/quickstart.py``.

Uses SQLite files in a temporary directory; set both default managers and go.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sessionscope import (
    AsyncSessionManager,
    SessionManager,
    async_session_scope,
    async_with_session,
    session_scope,
    set_default_manager,
    with_session,
)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


# Decorating needs no manager yet: it is looked up when the function is called.
@async_with_session
async def create_user_async(session: AsyncSession, name: str) -> User:
    user = User(name=name)
    session.add(user)
    return user


@with_session
def create_user(session: Session, name: str) -> User:
    user = User(name=name)
    session.add(user)
    return user


async def async_examples() -> None:
    user = await create_user_async(name="ada")
    async with async_session_scope() as session:
        result = await session.execute(select(User))
        print("async:", [u.name for u in result.scalars()], "- created", user.name)


def sync_examples() -> None:
    user = create_user(name="bob")
    with session_scope() as session:
        result = session.execute(select(User))
        print("sync:", [u.name for u in result.scalars()], "- created", user.name)


def main() -> None:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "quickstart.db"
        sync_manager = SessionManager(f"sqlite:///{path}")
        Base.metadata.create_all(sync_manager.engine)
        set_default_manager(sync_manager)
        async_manager = AsyncSessionManager(f"sqlite+aiosqlite:///{path}")
        set_default_manager(async_manager)

        asyncio.run(async_examples())
        sync_examples()

        asyncio.run(async_manager.dispose())
        sync_manager.dispose()


if __name__ == "__main__":
    main()
