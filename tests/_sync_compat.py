"""Test helpers that differ by flavour, sync side: threads where the async side has tasks."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

Barrier = threading.Barrier
Event = threading.Event


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
