"""One database, both flavours: an async FastAPI API and a sync batch job.

The API (``create_api``) takes orders with an ``AsyncSessionManager``; the
nightly job (``run_batch``) is a plain sync program with a ``SessionManager``
on the same database that ships them. Give each the URL of its driver:
``sqlite+aiosqlite:///orders.db`` and ``sqlite:///orders.db`` for one SQLite
file, ``postgresql+asyncpg://...`` and ``postgresql+psycopg://...`` for
PostgreSQL. Run ``python examples/mixed_app.py`` for a short demo.
"""

# No ``from __future__ import annotations``: FastAPI reads the endpoints'
# annotations, and ``SessionDep`` is local to create_api().
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI, HTTPException
from sqlalchemy import String, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from sessionscope import AsyncSessionManager, SessionManager
from sessionscope.fastapi import session_dependency


class Base(DeclarativeBase):
    pass


class Order(Base):
    __tablename__ = "mixed_orders"

    id: Mapped[int] = mapped_column(primary_key=True)
    item: Mapped[str] = mapped_column(String(50))
    status: Mapped[str] = mapped_column(String(20), default="new")


def order_json(order: Order) -> dict[str, object]:
    return {"id": order.id, "item": order.item, "status": order.status}


# -- the API: async ------------------------------------------------------------------


def create_api(url: str) -> tuple[FastAPI, AsyncSessionManager]:
    """The API and its manager, on the database at ``url`` (an async driver's URL).

    The app disposes the manager when it shuts down (its lifespan), in the
    event loop its connections belong to.
    """
    manager = AsyncSessionManager(url)
    SessionDep = session_dependency(manager)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with manager:
            yield

    app = FastAPI(lifespan=lifespan)

    @app.post("/orders")
    async def create_order(session: SessionDep, item: str) -> dict[str, object]:
        order = Order(item=item, status="new")
        session.add(order)
        await session.flush()
        return order_json(order)

    @app.get("/orders/{order_id}")
    async def get_order(session: SessionDep, order_id: int) -> dict[str, object]:
        order = await session.get(Order, order_id)
        if order is None:
            raise HTTPException(status_code=404, detail=f"no order {order_id}")
        return order_json(order)

    @app.get("/orders")
    async def list_orders(session: SessionDep) -> list[dict[str, object]]:
        orders = await session.scalars(select(Order).order_by(Order.id))
        return [order_json(order) for order in orders]

    return app, manager


# -- the batch job: sync ----------------------------------------------------------------


def ship_new_orders(manager: SessionManager) -> int:
    """Ship every new order, each in a transaction of its own; how many were shipped."""

    @manager.with_session(retry_attempts=2)  # a lock conflict re-runs one order, not all
    def ship(session: Session, order_id: int) -> bool:
        order = session.get(Order, order_id)
        if order is None or order.status != "new":
            return False  # shipped meanwhile by another run
        order.status = "shipped"
        return True

    with manager.session_scope(read_only=True) as session:
        new = list(session.scalars(select(Order.id).where(Order.status == "new")))
    return sum(ship(order_id) for order_id in new)


def run_batch(url: str) -> int:
    """The job's entry point, on the database at ``url`` (a sync driver's URL)."""
    with SessionManager(url) as manager:
        return ship_new_orders(manager)


def create_tables(url: str) -> None:
    """Create the table (a sync driver's URL); an app would use its migrations."""
    with SessionManager(url) as manager:
        Base.metadata.create_all(manager.engine)


def main() -> None:
    from fastapi.testclient import TestClient

    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "orders.db"
        create_tables(f"sqlite:///{path}")
        app, _ = create_api(f"sqlite+aiosqlite:///{path}")
        with TestClient(app) as client:
            for item in ("tea", "cups", "saucers"):
                print("POST /orders:", client.post("/orders", params={"item": item}).json())
            print("batch job shipped", run_batch(f"sqlite:///{path}"), "orders")
            print("GET /orders:", [o["status"] for o in client.get("/orders").json()])


if __name__ == "__main__":
    main()
