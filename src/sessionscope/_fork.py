"""After ``os.fork()``: the child never touches a connection of its parent's.

A forked child inherits the parent's pools, with their open sockets, and the
scopes active in the forking thread. Two processes speaking on one socket
corrupt each other's conversation with the server (a ROLLBACK sent by the
child ends the parent's transaction), so in the child, right after the fork:

- every manager's pool forgets its connections without closing them
  (``Engine.dispose(close=False)``, SQLAlchemy's documented recipe); the
  child opens connections of its own when it needs them;
- the scopes that were active are the parent's: never joined in the child,
  and their sessions' connections are detached (again without closing), so
  that neither the scope's exit nor the garbage collector sends anything.
"""

from __future__ import annotations

import os
import weakref
from typing import Any, Protocol

from ._frames import innermost, mark_frames_forked

__all__ = ["forget_parent_connections", "watch"]


class _Manager(Protocol):
    def _after_fork(self) -> None: ...


_managers: weakref.WeakSet[Any] = weakref.WeakSet()


def watch(manager: _Manager) -> None:
    """Have ``manager`` forget its parent's connections in a forked child."""
    _managers.add(manager)


def _detach_connections(session: Any) -> None:
    """Drop ``session``'s connections without a word to the server (the recipe again:
    the pool then has nothing to reset or close)."""
    sync = getattr(session, "sync_session", session)
    transaction = sync._transaction
    while transaction is not None and transaction._parent is not None:
        transaction = transaction._parent
    if transaction is None:
        return
    for connection, *_ in transaction._connections.values():
        fairy = connection._dbapi_connection
        if fairy is None:
            continue
        record = fairy._connection_record
        if record is not None:
            record.dbapi_connection = None
        fairy.dbapi_connection = None


def forget_parent_connections() -> None:
    """Run in the child of a fork (``os.register_at_fork``)."""
    for manager in list(_managers):
        manager._after_fork()
    for session in mark_frames_forked():
        _detach_connections(session)
    innermost.set(None)


os.register_at_fork(after_in_child=forget_parent_connections)
