"""The body's ways around its session's ``commit()`` and ``rollback()``.

The manager's sessions route their own ``commit()``, ``rollback()`` and
``close()`` through the scope using them (``_async/session.py``). SQLAlchemy
offers other ways to end a transaction: ``session.begin()`` used as a context
manager, ``session.get_transaction().commit()``, and in the async flavour the
sync session that ``run_sync()`` hands to a legacy helper. Each fires the
session events below, which run only as a transaction ends, on the sync session
where the scope is noted (``_sessionscope_scope``). Those of the scope itself
run with no scope noted and return at once.

Out of reach: a Core-level ``session.connection().commit()`` or a ``COMMIT``
sent as SQL (SQLAlchemy warns about the latter).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._scope_base import Kind

__all__ = ["OWNERSHIP_LISTENERS"]


def _before_commit(session: Any) -> None:
    scope = session._sessionscope_scope
    if scope is None:
        return
    root = session._transaction
    while root.parent is not None:
        root = root.parent
    # SQLAlchemy notes the method running on a transaction (its state machine): none
    # runs on the root when a savepoint is released, and the transaction goes on.
    if root._current_fn is None:
        return
    if scope._kind is not Kind.OWN:
        raise scope.not_the_owner("commit")
    scope._committed_in_body = True  # the owner's work, committed: a re-run would repeat it


def _after_soft_rollback(session: Any, previous_transaction: Any) -> None:
    scope = session._sessionscope_scope
    if scope is None or scope._kind is Kind.OWN or previous_transaction.parent is not None:
        return
    # The whole transaction is gone, and nothing can bring it back: its owner must
    # not then commit what is left as if all were well.
    level = scope.level
    while level.parent is not None:
        level = level.parent
    level.mark_rollback_only(scope.not_the_owner("rollback"))


# The session events, by name: see listen_session_events() in the compat modules.
OWNERSHIP_LISTENERS: dict[str, Callable[..., None]] = {
    "before_commit": _before_commit,
    "after_soft_rollback": _after_soft_rollback,
}
