"""Reading your own writes from a streaming replica, across requests.

The app's reads run on a replica (``read_only=True`` scopes of a manager made
with ``replicas=[...]``), its writes on the primary. A replica applies the
primary's commits a little later, so a client that has just written could
read the state from before its write. After a write, the app puts
``manager.commit_token()`` in a cookie; the next request's read passes the
cookie to ``session_dependency(..., after=...)``, and runs only where that
write has been replayed: the replica once it has caught up (waiting at most
``SessionConfig.replica_wait``), else the primary. Other clients, without the
cookie, read from the replica whatever its lag (within ``max_replica_lag``).

Run ``python examples/replica_app.py PRIMARY_URL REPLICA_URL`` (async drivers'
URLs, e.g. ``postgresql+asyncpg://postgres@127.0.0.1:5432/db``) for a short
demo through httpx's ``ASGITransport`` (``pip install httpx2``); it drops its
table at the end.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints'
# annotations, and the dependencies are local to create_app().
import asyncio
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Cookie, FastAPI, Response
from pydantic import BaseModel
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionscope import AsyncSessionManager, SessionConfig
from sessionscope.fastapi import session_dependency

COOKIE = "commit_token"


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "replica_app_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(100))


class NewItem(BaseModel):
    name: str


def commit_token(commit_token: Annotated[str | None, Cookie()] = None) -> str | None:
    """The request's commit token: the cookie set after its client's last write."""
    return commit_token


def create_app(manager: AsyncSessionManager) -> FastAPI:
    Writing = session_dependency(manager)
    # Read-only: on a replica that has replayed the client's last write, if it wrote.
    Reading = session_dependency(manager, read_only=True, after=commit_token)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await manager.dispose()

    app = FastAPI(lifespan=lifespan)

    @app.post("/items", status_code=201)
    async def add_item(item: NewItem, session: Writing, response: Response) -> dict[str, Any]:
        row = Item(name=item.name)
        session.add(row)
        await session.flush()
        # The token must cover this request's write: commit it here (the scope would
        # commit only after the endpoint returns), then take the token.
        await session.commit()
        response.set_cookie(COOKIE, await manager.commit_token(), httponly=True)
        return {"id": row.id, "name": row.name}

    @app.get("/items")
    async def list_items(session: Reading) -> list[str]:
        return list((await session.scalars(select(Item.name).order_by(Item.id))).all())

    return app


async def demo(primary_url: str, replica_url: str) -> None:  # pragma: no cover - a demo
    import httpx2

    manager = AsyncSessionManager(
        primary_url, replicas=[replica_url], config=SessionConfig(replica_wait=2.0)
    )
    async with manager.session_scope() as session:
        await session.run_sync(lambda s: Base.metadata.create_all(s.connection()))
    app = create_app(manager)
    transport = httpx2.ASGITransport(app=app)
    try:
        async with httpx2.AsyncClient(transport=transport, base_url="http://demo") as client:
            created = await client.post("/items", json={"name": "first"})
            print("POST /items ->", created.status_code, created.json())
            print("cookie:", client.cookies.get(COOKIE))
            print("GET /items (with the cookie) ->", (await client.get("/items")).json())
            print("engines:", manager.monitor.snapshot()["engines"])
    finally:
        async with manager.session_scope() as session:
            await session.run_sync(lambda s: Base.metadata.drop_all(s.connection()))
        await manager.dispose()


if __name__ == "__main__":  # pragma: no cover
    if len(sys.argv) != 3:
        sys.exit(f"usage: {sys.argv[0]} PRIMARY_URL REPLICA_URL")
    asyncio.run(demo(sys.argv[1], sys.argv[2]))
