"""Moving an existing FastAPI app to sessionscope, one endpoint at a time.

The app already has an engine, ``SessionLocal`` and its own ``get_db()``
dependency. It wraps ``SessionLocal`` in a ``SessionManager``; the old
endpoints keep ``Depends(get_db)`` and the new ones use
``session_dependency(manager)``. One decorated helper serves both: the old
endpoints pass it their session (used as is, never committed nor closed by
the decorator), the new ones call it without one (it joins the request's
transaction). Run ``python examples/migration_app.py`` for a short demo; it
calls the app through Starlette's ``TestClient``, which needs ``pip install
httpx2`` (Starlette 1.10 and later; older ones take ``httpx``).
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints'
# annotations, and ``SessionDep`` is local to create_app().
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

from fastapi import Body, Depends, FastAPI, HTTPException
from sqlalchemy import String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from sessionscope import SessionManager
from sessionscope.fastapi import session_dependency


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "migration_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50), unique=True)


def create_app(url: str) -> tuple[FastAPI, SessionManager]:
    """The app and its manager, on the database at ``url`` (a sync driver's URL)."""
    # -- what the app had before sessionscope, unchanged ---------------------------
    engine = create_engine(url)
    SessionLocal = sessionmaker(bind=engine, autoflush=False)

    def get_db() -> Iterator[Session]:
        db = SessionLocal()
        try:
            yield db
            # Since FastAPI 0.118 this runs after the response has been sent: a
            # failing commit here is a lost write behind a 200. The new endpoints
            # below commit before the response.
            db.commit()
        except Exception:
            db.rollback()
            raise
        finally:
            db.close()

    # -- new: a manager on the same sessionmaker, so the same engine and pool ------
    manager = SessionManager(SessionLocal)
    SessionDep = session_dependency(manager)

    @manager.with_session
    def add_items(session: Session, names: list[str]) -> list[Item]:
        """All of ``names`` as new items, in the caller's transaction; 409 if one exists."""
        items = []
        for name in names:
            if session.scalar(select(Item.id).where(Item.name == name)) is not None:
                raise HTTPException(status_code=409, detail=f"item {name!r} exists")
            item = Item(name=name)
            session.add(item)
            session.flush()  # autoflush is off in this app's sessionmaker
            items.append(item)
        return items

    app = FastAPI()

    # Old endpoints: their own get_db(); they pass its session to the helper.
    @app.post("/old/items")
    def old_create_items(
        names: Annotated[list[str], Body()], db: Annotated[Session, Depends(get_db)]
    ) -> list[str]:
        return [item.name for item in add_items(db, names)]

    @app.get("/old/items")
    def old_list_items(db: Annotated[Session, Depends(get_db)]) -> list[str]:
        return list(db.scalars(select(Item.name).order_by(Item.name)))

    # New endpoints: the manager's request session; the helper joins it.
    @app.post("/items")
    def create_items(session: SessionDep, names: Annotated[list[str], Body()]) -> list[str]:
        return [item.name for item in add_items(names)]

    @app.get("/items")
    def list_items(session: SessionDep) -> list[str]:
        return list(session.scalars(select(Item.name).order_by(Item.name)))

    return app, manager


def main() -> None:
    from fastapi.testclient import TestClient

    with tempfile.TemporaryDirectory() as directory:
        app, manager = create_app(f"sqlite:///{Path(directory) / 'migration.db'}")
        Base.metadata.create_all(manager.engine)
        with TestClient(app) as client:
            print("old POST:", client.post("/old/items", json=["apple", "pear"]).json())
            print("new POST:", client.post("/items", json=["plum"]).json())
            response = client.post("/items", json=["fig", "apple"])
            print("new POST, one exists:", response.status_code, response.json()["detail"])
            print("old GET:", client.get("/old/items").json())
            print("new GET:", client.get("/items").json())
        manager.engine.dispose()  # the app's engine: a borrowed one, not the manager's


if __name__ == "__main__":
    main()
