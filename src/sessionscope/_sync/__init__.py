# Generated from src/sessionscope/_async/__init__.py
# by tools/generate_sync.py: do not edit.
# Edit the file under _async/ and run: python tools/generate_sync.py
"""One flavour of the library: the managers, scopes and decorators of ``_async``
(written by hand) and of ``_sync`` (generated from it by tools/generate_sync.py)."""

from .default import session_scope, with_session
from .manager import SessionManager
from .scope import SessionScope

__all__ = ["SessionManager", "SessionScope", "session_scope", "with_session"]
