"""Where in the user's code something happened, for messages that must say so.

Nothing is recorded as scopes open: the stack is read when a message needs it.
"""

from __future__ import annotations

import sys
from types import FrameType

__all__ = ["call_site", "opened_at"]


def call_site() -> str:
    """Where the user's code is: the first frame outside sessionscope. While a
    with-block exits, Python reports the line of its ``with`` statement, so
    called from a scope's exit this is where the scope was opened."""
    return _describe(_outside_sessionscope(sys._getframe(1)))


def _outside_sessionscope(frame: FrameType) -> FrameType:
    while frame.f_back is not None and frame.f_globals.get("__name__", "").startswith(
        "sessionscope."
    ):
        frame = frame.f_back
    return frame


def _describe(frame: FrameType) -> str:
    return f"{frame.f_code.co_name} at {frame.f_code.co_filename}:{frame.f_lineno}"


def opened_at(session: object) -> str:
    """Where the scope using ``session`` was entered, found on the stack of the code
    running inside it: the outermost frame holding the session (scopes inside it
    hold it too). The line given is the one that function is running now."""
    found = None
    frame: FrameType | None = sys._getframe(1)
    while frame is not None:
        if any(value is session for value in frame.f_locals.values()):
            found = frame
        frame = frame.f_back
    if found is None:
        return "a place no longer on the stack"
    return _describe(_outside_sessionscope(found))
