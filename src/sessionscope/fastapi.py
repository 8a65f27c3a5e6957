"""FastAPI: a request session that is committed before the response is sent.

``session_dependency(manager)`` gives the parameter type of an endpoint::

    SessionDep = session_dependency(manager)

    @app.post("/users")
    async def create_user(session: SessionDep, name: str): ...

The scope commits when the endpoint returns and *before* FastAPI sends the
response, so a failed COMMIT becomes a 500, never a 200 whose data is gone.
Since FastAPI 0.118 the code after ``yield`` in a plain ``Depends(dependency)``
runs after the response; ``Depends(dependency, scope="function")`` (FastAPI
0.121 and later) runs it before, and that is what this module uses. On an
older FastAPI it refuses with an error instead of committing too late.

An exception leaving the endpoint (``HTTPException`` included) rolls back.
Functions decorated with the manager's ``with_session``, called while the
request is handled without a session argument, join the request's
transaction, in ``async def`` endpoints and in ``def`` endpoints (which run in
a worker thread). Background tasks run after the scope has ended: they open
scopes of their own.

A sync manager's connect, COMMIT and close run in worker threads of their
own, not in the thread pool FastAPI runs ``def`` endpoints in: there a request
holding a connection (or SQLite's write lock) could wait for a free thread to
COMMIT while every thread is taken by requests waiting for that connection or
lock, until the pool or busy timeout fails them.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Annotated, Any

from .errors import ConfigurationError

try:
    import fastapi
    from anyio import CapacityLimiter, to_thread
    from anyio.lowlevel import RunVar
    from fastapi import Depends
except ImportError as exc:  # pragma: no cover - exercised without the extra installed
    raise ImportError(
        f'sessionscope.fastapi needs FastAPI: pip install "sessionscope[fastapi]" ({exc})'
    ) from exc

__all__ = ["session_dependency", "session_depends"]

# Worker threads for a sync manager's request scopes, per event loop: one set
# that opens scopes (and may wait for a pooled connection), one that ends them
# (COMMIT or ROLLBACK, and close). Ending a scope releases what others wait
# for, so it never queues behind them, nor behind the endpoints' thread pool.
_THREADS_PER_LIMITER = 40  # as many as that pool has by default
_OPENING: RunVar[CapacityLimiter] = RunVar("sessionscope_fastapi_opening")
_CLOSING: RunVar[CapacityLimiter] = RunVar("sessionscope_fastapi_closing")


def _limiter(threads: RunVar[CapacityLimiter]) -> CapacityLimiter:
    try:
        return threads.get()
    except LookupError:
        limiter = CapacityLimiter(_THREADS_PER_LIMITER)
        threads.set(limiter)
        return limiter


def _request_session(manager: Any, **options: Any) -> Callable[[], AsyncIterator[Any]]:
    """The dependency function itself: one scope of ``manager`` per request.

    ``options`` are those of ``manager.session_scope()``. It is an async
    generator for both flavours, so that it runs in the request's own task:
    what it sets up is then visible to the endpoint and to what it calls
    (FastAPI runs a sync generator dependency in a worker thread, with a copy
    of the context that the endpoint never sees). A sync manager's blocking
    work (connecting, COMMIT) still runs in worker threads, on limiters of
    its own (see the module's docstring).
    """
    per_request = {
        name: value
        for name, value in options.items()
        if name in _PER_REQUEST and callable(value) and not isinstance(value, Mapping)
    }
    fixed = {k: v for k, v in options.items() if k not in per_request}
    if "settings" in per_request and manager.engine.dialect.name != "postgresql":
        raise ConfigurationError(
            f"settings={per_request['settings']!r}: per-request settings need PostgreSQL's "
            f"set_config(); {manager.name} is {manager.engine.dialect.name}"
        )
    # Bad options fail here, at import time; a per-request one with a stand-in value
    # of its kind, the real ones per request.
    manager._resolve_options({**fixed, **{k: _PER_REQUEST[k] for k in per_request}})
    if manager.is_async:

        async def async_request_session(**asked: Any) -> AsyncIterator[Any]:
            async with manager.session_scope(**fixed, **asked) as session:
                yield session

        return _taking(async_request_session, per_request)

    async def sync_request_session(**asked: Any) -> AsyncIterator[Any]:
        scope = manager.session_scope(**fixed, **asked)
        session = await to_thread.run_sync(scope.__enter__, limiter=_limiter(_OPENING))
        scope.make_current()
        try:
            yield session
        except BaseException as error:
            scope.release_current()
            await to_thread.run_sync(
                scope.__exit__,
                type(error),
                error,
                error.__traceback__,
                limiter=_limiter(_CLOSING),
            )
            raise
        scope.release_current()
        await to_thread.run_sync(scope.__exit__, None, None, None, limiter=_limiter(_CLOSING))

    return _taking(sync_request_session, per_request)


# Options that may be FastAPI dependencies resolved per request, with a value of
# their kind to check the others against when the dependency is made.
_PER_REQUEST: dict[str, Any] = {"settings": {}, "after": "0/0"}
_PER_REQUEST_TYPES: dict[str, Any] = {"settings": Mapping[str, Any], "after": str | None}


def _taking(
    dependency: Callable[..., AsyncIterator[Any]], per_request: Mapping[str, Callable[..., Any]]
) -> Callable[..., AsyncIterator[Any]]:
    """The signature FastAPI reads: a parameter per option resolved by its own
    dependency (the tenant from the request's auth, the commit token from a
    cookie), or none."""
    parameters = [
        inspect.Parameter(
            name,
            inspect.Parameter.KEYWORD_ONLY,
            annotation=Annotated[_PER_REQUEST_TYPES[name], Depends(resolve)],
        )
        for name, resolve in per_request.items()
    ]
    dependency.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    return dependency


def session_depends(manager: Any, **options: Any) -> Any:
    """The bare ``Depends(...)`` of the request session, committed before the response,
    for an annotation you spell yourself:
    ``session: Annotated[AsyncSession, session_depends(manager)]``.
    ``session_dependency()`` is that whole annotation, and what most code wants.
    """
    if "scope" not in inspect.signature(Depends).parameters:
        raise ConfigurationError(
            f"FastAPI {fastapi.__version__} cannot run a dependency's exit code before the "
            "response is sent, so a failed COMMIT would reach the client as a success; "
            "sessionscope.fastapi needs FastAPI >= 0.121 (Depends(..., scope='function'))"
        )
    return Depends(_request_session(manager, **options), scope="function")


def session_dependency(manager: Any, **options: Any) -> Any:
    """The parameter type of an endpoint that gets the request's session:
    ``Annotated[AsyncSession, session_depends(manager, **options)]`` (``Session``
    for a sync manager). One scope of ``manager`` per request, committed before
    the response is sent; ``options`` are those of ``session_scope()``.

    ``settings`` may also be a FastAPI dependency returning the mapping (the
    tenant of the request's user, for row-level security): it is resolved per
    request, and its values are set in the transaction before the endpoint runs.
    So may ``after``, returning the request's commit token or None (read from a
    cookie: see the README's "Replicas, poolers and failover").
    """
    if manager.is_async:
        from sqlalchemy.ext.asyncio import AsyncSession

        return Annotated[AsyncSession, session_depends(manager, **options)]
    from sqlalchemy.orm import Session

    return Annotated[Session, session_depends(manager, **options)]
