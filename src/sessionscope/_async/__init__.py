"""The async flavour, hand-written. ``_sync`` is generated from it: edit only here."""

from .default import async_session_scope, async_with_session
from .manager import AsyncSessionManager
from .scope import AsyncSessionScope

__all__ = ["AsyncSessionManager", "AsyncSessionScope", "async_session_scope", "async_with_session"]
