"""The manager of this flavour: an engine, a sessionmaker and the scopes opened on them.

What never awaits is in ``_manager_base.py``; this class names its flavour's
classes and adds the typed entry points and what awaits.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Sequence
from types import TracebackType
from typing import Any, Concatenate, ParamSpec, Self, TypeVar, Unpack, overload

from sqlalchemy import URL

from .._async_compat import (
    IS_ASYNC,
    AsyncEngine,
    AsyncSession,
    Outcome,
    Turns,
    async_sessionmaker,
    create_async_engine,
    listen_session_events,
    other_flavour,
    sync_engine_of,
)
from .._manager_base import Flavour, ManagerBase
from .._options import ScopeKwargs, SessionKwargs
from ..config import SessionConfig
from .decorator import AsyncSessionDecorator, session_function
from .routing import commit_token
from .scope import AsyncSessionScope
from .session import session_class

__all__ = ["AsyncSessionManager"]

P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")

_FLAVOUR = Flavour(
    is_async=IS_ASYNC,
    engine_class=AsyncEngine,
    sessionmaker_class=async_sessionmaker,
    session_class=AsyncSession,
    create_engine=create_async_engine,
    sync_engine_of=sync_engine_of,
    other_flavour=other_flavour,
    listen_session_events=listen_session_events,
    turns_class=Turns,
    scoped_session_class=session_class,
)


class AsyncSessionManager(ManagerBase):
    __doc__ = ManagerBase.__doc__

    is_async = IS_ASYNC
    _flavour = _FLAVOUR
    engine: AsyncEngine
    _turns: Turns | None

    def __init__(
        self,
        bind: str | URL | AsyncEngine | async_sessionmaker[Any],
        *,
        replicas: Sequence[str | URL | AsyncEngine] | None = None,
        config: SessionConfig | None = None,
        **engine_options: Any,
    ) -> None:
        super().__init__(bind, replicas=replicas, config=config, **engine_options)

    def session_scope(self, **options: Unpack[ScopeKwargs]) -> AsyncSessionScope:
        """A transactional scope; its class's docstring explains the nesting rules."""
        if not options:
            return AsyncSessionScope(self, self._default_options)
        return AsyncSessionScope(self, self._resolve_options(options))

    @overload
    def with_session(
        self, fn: Callable[Concatenate[AsyncSession, P], Outcome[R]], /
    ) -> Callable[P, Outcome[R]]: ...

    @overload
    def with_session(
        self, fn: Callable[Concatenate[T, AsyncSession, P], Outcome[R]], /
    ) -> Callable[Concatenate[T, P], Outcome[R]]: ...

    @overload
    def with_session(
        self, fn: None = None, /, **options: Unpack[SessionKwargs]
    ) -> AsyncSessionDecorator: ...

    def with_session(self, fn: Any = None, /, **options: Any) -> Any:
        """Decorate a function whose first parameter takes the session.

        Each call runs in a scope of this manager and gets its session as the
        first argument. A caller may pass a session instead (by keyword or
        first positional argument): a session of an active scope is joined
        under the propagation rules, any other session is used as is, neither
        committed nor closed. Usable bare (``@manager.with_session``) or with
        options (``@manager.with_session(propagation="nested")``).

        In a method (first parameter ``self`` or ``cls``) the session is the
        second parameter; the decorator goes above or below ``@staticmethod``
        and ``@classmethod``. Generator functions are refused: their scope
        would have to stay open between the values they yield.
        """
        if fn is None:
            return lambda fn: session_function(fn, options, self)
        return session_function(fn, options, self)

    async def get_db(self) -> AsyncIterator[AsyncSession]:
        """One scope per use, as a generator, for dependency-injection frameworks and
        hand wiring. Not for FastAPI's plain ``Depends``: since FastAPI 0.118 it
        runs the code after ``yield``, the COMMIT, after the response has been
        sent; use ``sessionscope.fastapi.session_dependency(manager)``."""
        async with self.session_scope() as session:
            yield session

    async def commit_token(self) -> str:
        """An opaque token covering every commit finished before this call: a
        read-only scope given it (``after=token``) runs only where those commits
        can be read, in this process or another. PostgreSQL only (the primary's
        WAL position)."""
        self._check_tokens("commit_token()")
        return await commit_token(self.engine)

    async def dispose(self) -> None:
        """Dispose the engines this manager created; borrowed ones are left alone."""
        if self._watchdog is not None:
            self._watchdog.stop()
        if self._owns_engine:
            await self.engine.dispose()
        if self._read_engine:
            await self._read_engine.dispose()
        for replica in self._replicas.replicas if self._replicas is not None else ():
            if replica.owned:
                await replica.engine.dispose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.dispose()
