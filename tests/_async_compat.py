"""Test helpers that differ by flavour, async side (the sync twin is _sync_compat.py).

Generated tests import ``tests._async_compat``; the generator maps it to
``tests._sync_compat``, where the same names use threads.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

Barrier = asyncio.Barrier
Event = asyncio.Event
sleep = asyncio.sleep


async def run_concurrently(*workers: Callable[[], Awaitable[Any]]) -> list[Any]:
    """Run the workers at the same time; their results, or the exceptions they raised."""
    return list(await asyncio.gather(*(worker() for worker in workers), return_exceptions=True))


async def wait_for_barrier(barrier: asyncio.Barrier) -> None:
    async with asyncio.timeout(5):  # a worker that never arrives fails the test, not hangs it
        await barrier.wait()


def client_for(app: Any, *, raise_server_exceptions: bool = True) -> Any:
    """An HTTP client calling ``app`` in this event loop: ``async with client_for(app) as c:``.

    ``raise_server_exceptions=False`` gives the 500 response instead of raising
    the app's error, as ``TestClient``'s option of that name does.
    """
    import httpx2  # only the FastAPI tests need it

    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=raise_server_exceptions)
    return httpx2.AsyncClient(transport=transport, base_url="http://test")


def start_in_copy(fn: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
    """Start ``fn`` as code started inside a scope runs: in a task (here) or a thread
    (sync), with a copy of the current context; ``await finish(handle)`` for its result."""
    return asyncio.create_task(fn())  # type: ignore[arg-type]


async def finish(handle: asyncio.Task[Any]) -> Any:
    return await handle


async def run_in(context: contextvars.Context, fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` in ``context`` (a copy made earlier): in a task of its own here, in
    this very thread in the sync flavour."""
    return await asyncio.create_task(fn(), context=context)  # type: ignore[arg-type]


async def wait_for_event(event: asyncio.Event) -> None:
    async with asyncio.timeout(10):  # a setter that never comes fails the test, not hangs it
        await event.wait()


async def create_tables(engine: Any) -> None:
    """The test tables, on a database only ``engine`` can reach (in-memory SQLite)."""
    from tests.models import Base

    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)


def run_flavour(fn: Callable[[], Awaitable[Any]]) -> Any:
    """Run ``fn`` from code that is not async (a forked child's entry point)."""
    return asyncio.run(fn())  # type: ignore[arg-type]
