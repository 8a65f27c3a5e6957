"""The sessions a manager makes: the body may end only a transaction its scope owns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._async_compat import AsyncSession, guarded_session_class, sync_session_of

if TYPE_CHECKING:
    from .scope import AsyncSessionScope

__all__ = ["AsyncScopedSession", "session_class"]


class AsyncScopedSession(AsyncSession):
    """Mixed into the class of every session a manager makes (a borrowed
    sessionmaker's class included).

    While a scope uses the session, ``commit()``, ``rollback()`` and
    ``close()`` go through that scope (its ``end_in_body()``):
    the scope that owns the transaction goes on with a new one, anything
    else gets ``TransactionOwnershipError``. Outside any scope (the scope
    itself ending its transaction, or code using the session after its
    scope) they are SQLAlchemy's own.
    """

    # The innermost scope using the session, on the sync session (in the async
    # flavour, the class of its sync_session has the same attribute).
    _sessionscope_scope: AsyncSessionScope | None = None

    async def commit(self) -> None:
        scope = sync_session_of(self)._sessionscope_scope
        if scope is None:
            await super().commit()
        else:
            await scope.end_in_body(super().commit, "commit")

    async def rollback(self) -> None:
        scope = sync_session_of(self)._sessionscope_scope
        if scope is None:
            await super().rollback()
        else:
            await scope.end_in_body(super().rollback, "rollback")

    async def close(self) -> None:
        scope = sync_session_of(self)._sessionscope_scope
        if scope is None:
            await super().close()
        else:
            # Not close(): the manager's sessions refuse any use once closed,
            # and the body may go on with a new transaction.
            await scope.end_in_body(super().reset, "close")


_classes: dict[type[Any], type[Any]] = {}


def session_class(base: type[AsyncSession]) -> type[AsyncSession]:
    """``base`` with the rules above (and the checks of this flavour), made once per class."""
    made = _classes.get(base)
    if made is None:
        if base is AsyncSession:
            made = AsyncScopedSession
        else:
            namespace = {"__module__": base.__module__}
            made = type(base.__name__, (AsyncScopedSession, base), namespace)
        made = guarded_session_class(made)
        _classes[base] = made
    return made
