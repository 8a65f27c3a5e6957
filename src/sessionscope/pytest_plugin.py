"""pytest fixtures that run each test in an isolation of your managers.

Registered by the package's ``pytest11`` entry point and inert until a test
uses its fixtures. Override ``sessionscope_managers`` in your ``conftest.py``
to return the managers to isolate, then use ``sessionscope_isolation`` (sync
managers) and ``sessionscope_async_isolation`` (async managers, with
pytest-asyncio >= 1.0) in tests, or mark them ``autouse`` in your conftest.
The README's "Testing your code" has a complete ``conftest.py``.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator, Sequence
from typing import Any

import pytest

from .errors import ConfigurationError

__all__ = ["sessionscope_async_isolation", "sessionscope_isolation", "sessionscope_managers"]


@pytest.fixture(scope="session")
def sessionscope_managers() -> Sequence[Any]:
    """The managers a test's isolation covers: override this fixture in conftest.py."""
    raise ConfigurationError(
        "the sessionscope fixtures need to know your managers: define a fixture named "
        "sessionscope_managers in your conftest.py that returns them (a list)"
    )


def _of_flavour(managers: Sequence[Any], is_async: bool) -> tuple[Any, ...]:
    chosen = tuple(m for m in managers if getattr(m, "is_async", None) is is_async)
    if not chosen:
        kind = "AsyncSessionManager" if is_async else "SessionManager"
        raise ConfigurationError(
            f"sessionscope_managers returned no {kind} ({list(managers)!r}): this "
            "fixture isolates the managers of its own flavour"
        )
    return chosen


@pytest.fixture
def sessionscope_isolation(sessionscope_managers: Sequence[Any]) -> Iterator[Any]:
    """The test's isolation of the sync managers (``sessionscope.testing.isolated``)."""
    from .testing import isolated

    with isolated(*_of_flavour(sessionscope_managers, False)) as isolation:
        yield isolation


if importlib.util.find_spec("pytest_asyncio") is not None:
    import pytest_asyncio

    @pytest_asyncio.fixture
    async def sessionscope_async_isolation(sessionscope_managers: Sequence[Any]) -> Any:
        """The test's isolation of the async managers (``testing.async_isolated``).

        It runs in the test's event loop (pytest-asyncio's fixture loop scope):
        the managers' connections belong to one loop, so keep the managers'
        loop and the tests' the same (e.g. ``loop_scope="session"`` for both).
        """
        from .testing import async_isolated

        async with async_isolated(*_of_flavour(sessionscope_managers, True)) as isolation:
            yield isolation

else:

    @pytest.fixture
    def sessionscope_async_isolation() -> Any:
        raise ConfigurationError(
            "sessionscope_async_isolation is an async fixture: pip install pytest-asyncio"
        )
