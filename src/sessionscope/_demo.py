"""The tour behind ``python -m sessionscope demo``: every step prints what it shows."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import tempfile
from pathlib import Path

from sqlalchemy import String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from . import SessionManager, on_commit


class _Base(DeclarativeBase):
    pass


class Note(_Base):
    __tablename__ = "notes"

    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100))


def _say(step: str, detail: str) -> None:
    print(f"\n== {step}\n   {detail}")


def _count(manager: SessionManager) -> int:
    with manager.session_scope(read_only=True) as session:
        return int(session.scalar(select(func.count()).select_from(Note)) or 0)


def run_demo() -> int:
    with tempfile.TemporaryDirectory(prefix="sessionscope-demo-") as directory:
        path = Path(directory) / "demo.db"
        print(f"sessionscope demo on the SQLite file {path}")
        with SessionManager(f"sqlite:///{path}") as manager:
            _Base.metadata.create_all(manager.engine)
            _sync_steps(manager)
            _async_step(path)
            _say(
                "The sync manager's counters",
                "manager.monitor.snapshot() (a JSON-serialisable dict) after the steps above:",
            )
            print(json.dumps(manager.monitor.snapshot(), indent=2))
    return 0


def _sync_steps(manager: SessionManager) -> None:
    _say("A sync scope", "`with manager.session_scope() as session:` commits when the block ends.")
    with manager.session_scope() as session:
        session.add(Note(text="written in a sync scope"))
    print(f"   rows now: {_count(manager)}")

    _say(
        "The decorator",
        "`@manager.with_session` opens a scope per call and passes the session in first.",
    )

    @manager.with_session
    def add_note(session: Session, text: str) -> Note:
        note = Note(text=text)
        session.add(note)
        return note

    note = add_note(text="written by a decorated function")
    print(f"   returned Note id={note.id}, still readable after its scope: {note.text!r}")

    _say(
        "A rollback on error",
        "an exception leaving the outermost scope rolls everything back, and goes on up.",
    )
    before = _count(manager)
    try:
        with manager.session_scope() as session:
            session.add(Note(text="never committed"))
            raise RuntimeError("the payment failed")
    except RuntimeError as error:
        print(f"   caught {error!r}; rows still {_count(manager)} (were {before})")

    _say(
        "A savepoint rolled back inside a committed transaction",
        "an error leaving `session_scope(propagation='nested')` undoes only the savepoint.",
    )
    with manager.session_scope() as session:
        session.add(Note(text="kept: outer transaction"))
        try:
            with manager.session_scope(propagation="nested") as inner:
                inner.add(Note(text="discarded: savepoint"))
                inner.flush()
                raise ValueError("something went wrong in the savepoint")
        except ValueError as error:
            print(f"   caught {error!r}; the outer transaction goes on")
    with manager.session_scope() as session:
        texts = session.scalars(select(Note.text).order_by(Note.id)).all()
    print(f"   rows now: {texts}")

    _say("An on_commit callback", "`on_commit(fn)` runs fn only once the transaction committed.")
    with manager.session_scope() as session:
        session.add(Note(text="announced after commit"))
        on_commit(lambda: print(f"   on_commit ran: {_count(manager)} rows are committed"))
        print("   still inside the scope: nothing announced yet")


def _async_step(path: Path) -> None:
    if (
        importlib.util.find_spec("aiosqlite") is None
        or importlib.util.find_spec("greenlet") is None
    ):
        _say("An async scope", 'skipped: pip install "sessionscope[aiosqlite]" to see it')
        return
    from ._async import AsyncSessionManager

    async def main() -> None:
        async with AsyncSessionManager(f"sqlite+aiosqlite:///{path}") as manager:
            async with manager.session_scope() as session:
                session.add(Note(text="written in an async scope"))
            async with manager.session_scope() as session:
                count = await session.scalar(select(func.count()).select_from(Note))
            print(f"   rows now: {count}")
            snapshot = manager.monitor.snapshot()
            print(f"   the async manager's counters: {json.dumps(snapshot['transactions'])}")

    _say(
        "An async scope",
        "`async with manager.session_scope() as session:` on aiosqlite, same rules.",
    )
    asyncio.run(main())
