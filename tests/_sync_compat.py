"""Test helpers that differ by flavour, sync side: threads where the async side has tasks."""

from __future__ import annotations

import contextvars
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Barrier = threading.Barrier
Event = threading.Event
sleep = time.sleep


def run_concurrently(*workers: Callable[[], Any]) -> list[Any]:
    """Run the workers at the same time; their results, or the exceptions they raised."""

    def outcome(worker: Callable[[], Any]) -> Any:
        try:
            return worker()
        except Exception as error:
            return error

    with ThreadPoolExecutor(max_workers=len(workers)) as pool:
        return list(pool.map(outcome, workers))


def wait_for_barrier(barrier: threading.Barrier) -> None:
    barrier.wait(5)  # a worker that never arrives fails the test, not hangs it


def client_for(app: Any, *, raise_server_exceptions: bool = True) -> Any:
    """Starlette's ``TestClient`` for ``app``: ``with client_for(app) as c:``.

    Its requests run the app in the client's event loop thread, and ``def``
    endpoints in that loop's worker threads, as under a real server.
    """
    from fastapi.testclient import TestClient  # only the FastAPI tests need it

    return TestClient(app, raise_server_exceptions=raise_server_exceptions)


class _Started(threading.Thread):
    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._context = contextvars.copy_context()
        self._fn = fn
        self.result: Any = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self.result = self._context.run(self._fn)
        except BaseException as error:
            self.error = error


def start_in_copy(fn: Callable[[], Any]) -> _Started:
    """Start ``fn`` in a thread with a copy of the current context (as
    ``contextvars.copy_context().run`` or a context-propagating pool would)."""
    started = _Started(fn)
    started.start()
    return started


def finish(handle: _Started) -> Any:
    handle.join(10)
    assert not handle.is_alive(), "the thread did not finish"
    if handle.error is not None:
        raise handle.error
    return handle.result


def run_in(context: contextvars.Context, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in ``context`` (a copy made earlier), in this thread."""
    return context.run(fn)


def wait_for_event(event: threading.Event) -> None:
    assert event.wait(10), "the event was never set"


def create_tables(engine: Any) -> None:
    """The test tables, on a database only ``engine`` can reach (in-memory SQLite)."""
    from tests.models import Base

    Base.metadata.create_all(engine)


def run_flavour(fn: Callable[[], Any]) -> Any:
    """Run ``fn`` from code that is not async (a forked child's entry point)."""
    return fn()
