"""One flavour of the library: the managers, scopes and decorators of ``_async``
(written by hand) and of ``_sync`` (generated from it by tools/generate_sync.py)."""

from .default import async_session_scope, async_with_session
from .manager import AsyncSessionManager
from .scope import AsyncSessionScope

__all__ = ["AsyncSessionManager", "AsyncSessionScope", "async_session_scope", "async_with_session"]
