# Generated from src/sessionscope/_async/session.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""The sessions a manager makes: the body may end only a transaction its scope owns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .._sync_compat import ScopeHolder, Session, guarded_session_class

if TYPE_CHECKING:
    from .scope import SessionScope

__all__ = ["ScopedSession", "session_class"]


class ScopedSession(ScopeHolder, Session):
    """Mixed into the class of every session a manager makes (a borrowed
    sessionmaker's class included).

    While a scope uses the session, ``commit()``, ``rollback()`` and
    ``close()`` go through that scope (its ``end_in_body()``):
    the scope that owns the transaction goes on with a new one, anything
    else gets ``TransactionOwnershipError``. Outside any scope (the scope
    itself ending its transaction, or code using the session after its
    scope) they are SQLAlchemy's own.
    """

    _sessionscope_unscoped: type[Session]  # see session_class()

    def commit(self) -> None:
        scope: SessionScope | None = self._sessionscope_scope
        if scope is None:
            super().commit()
        else:
            scope.end_in_body(super().commit, "commit")

    def rollback(self) -> None:
        scope: SessionScope | None = self._sessionscope_scope
        if scope is None:
            super().rollback()
        else:
            scope.end_in_body(super().rollback, "rollback")

    def close(self) -> None:
        scope: SessionScope | None = self._sessionscope_scope
        if scope is None:
            super().close()
        else:
            # Not close(): the manager's sessions refuse any use once closed,
            # and the body may go on with a new transaction.
            scope.end_in_body(super().reset, "close")


_classes: dict[type[Any], type[Any]] = {}


def session_class(base: type[Session]) -> type[ScopedSession]:
    """``base`` with the rules above (and the checks of this flavour), made once per class.

    ``_sessionscope_unscoped`` is the class under the rules: its methods are the
    ones a scope ends its own transaction with.
    """
    made = _classes.get(base)
    if made is None:
        unscoped = guarded_session_class(base)
        namespace = {"__module__": base.__module__, "_sessionscope_unscoped": unscoped}
        made = type(base.__name__, (ScopedSession, unscoped), namespace)
        _classes[base] = made
    return made
