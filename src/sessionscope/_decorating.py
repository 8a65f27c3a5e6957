"""What ``with_session`` checks about the function it decorates, in either flavour.

All of it happens once, at decoration time, so that a function that cannot
work fails where it is decorated, with ``TypeError`` (a programming error about
the function, as Python raises for a bad call, not a ``SessionScopeError``).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["check_decorated", "check_fallback", "name_of", "note_once"]

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_NOTE = "sessionscope: "


def check_decorated(
    fn: Callable[..., Any],
    session_class: type[Any],
    is_flavour_function: Callable[[Callable[..., Any]], bool],
) -> tuple[inspect.Signature, int]:
    """``fn``'s signature and the position of its session parameter; TypeError for a
    function the decorator of this flavour cannot run."""
    if not callable(fn):
        raise TypeError(f"with_session decorates a function, got {fn!r}")
    if inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
        raise TypeError(
            f"{name_of(fn)} is a generator function: its scope would have to stay open "
            "between the values it yields, whoever consumes them. Decorate a function that "
            "returns its results (a list, say), or open a scope inside the generator"
        )
    if not is_flavour_function(fn):
        raise TypeError(
            f"{name_of(fn)} does not suit this decorator's flavour: decorate coroutine "
            "functions with the async decorator and plain functions with the sync one"
        )
    return _session_parameter(fn, session_class)


def _session_parameter(
    fn: Callable[..., Any], session_class: type[Any]
) -> tuple[inspect.Signature, int]:
    """The signature, and the position of the parameter that takes the session: the
    first one, or the second one of a method (after ``self`` or ``cls``)."""
    try:
        signature = inspect.signature(fn, eval_str=True)
    except (NameError, TypeError, SyntaxError):
        signature = inspect.signature(fn)
    parameters = list(signature.parameters.values())
    position = 1 if parameters and parameters[0].name in ("self", "cls") else 0
    if len(parameters) <= position or parameters[position].kind not in _POSITIONAL:
        shown = parameters[position] if len(parameters) > position else "no such parameter"
        raise TypeError(
            f"{name_of(fn)} cannot take the session as its "
            f"{'second' if position else 'first'} parameter (it has {shown}); make the "
            "session the first positional parameter (after self or cls in a method)"
        )
    annotation = parameters[position].annotation
    if (
        annotation is not inspect.Parameter.empty
        and annotation is not Any  # a class since Python 3.11, and it takes anything
        and isinstance(annotation, type)
        and not (issubclass(annotation, session_class) or issubclass(session_class, annotation))
    ):
        raise TypeError(
            f"{name_of(fn)}: its parameter {parameters[position].name!r} is annotated "
            f"{annotation.__name__}, which cannot take a {session_class.__name__}"
        )
    return signature, position


def check_fallback(
    fallback: Callable[..., Any] | None,
    is_async: bool,
    is_flavour_function: Callable[[Callable[..., Any]], bool],
) -> None:
    """A sync function cannot await its fallback; an async one awaits it if it must."""
    if fallback is not None and not is_async and not is_flavour_function(fallback):
        raise TypeError(
            f"fallback {name_of(fallback)} is a coroutine function; a sync function cannot await it"
        )


def name_of(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", None) or repr(fn)


def note_once(error: BaseException, note: str) -> None:
    """Add our note to ``error``, unless an enclosing retry loop already has (the same
    error object can leave several decorated calls)."""
    if not any(n.startswith(_NOTE) for n in getattr(error, "__notes__", ())):
        error.add_note(_NOTE + note)
