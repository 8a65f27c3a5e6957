"""The sync API imports and works with SQLAlchemy installed without greenlet.

In the ``nogreenlet`` nox session greenlet is really absent and this runs as
is; elsewhere a child interpreter blocks the ``greenlet`` import first.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import sys
if {block}:
    sys.modules["greenlet"] = None  # any "import greenlet" now raises ImportError

from sqlalchemy import text
import sessionscope
from sessionscope import SessionManager, session_scope, set_default_manager, with_session

manager = SessionManager("sqlite:///" + sys.argv[1])
set_default_manager(manager)
with session_scope() as session:
    session.execute(text("CREATE TABLE t (x INTEGER)"))
    with session_scope(propagation="nested") as inner:
        inner.execute(text("INSERT INTO t VALUES (1)"))

@with_session
def count(session):
    return session.execute(text("SELECT count(*) FROM t")).scalar()

assert count() == 1
assert "sqlalchemy.ext.asyncio" not in sys.modules, "the sync path imported asyncio support"
# The async names fail on use, not on import, so that a star import works.
star = {{}}
exec("from sessionscope import *", star)
assert set(sessionscope.__all__) <= set(star), "the star import missed names"
for name, use in [
    ("AsyncSessionManager", lambda f: f("sqlite+aiosqlite://")),
    ("async_session_scope", lambda f: f()),
    ("async_with_session", lambda f: f(lambda session: None)),
]:
    try:
        use(star[name])
    except ImportError as exc:
        assert 'pip install "sessionscope[asyncio]"' in str(exc), exc
    else:
        raise AssertionError(name + " worked without greenlet")
testing = {{}}
exec("from sessionscope.testing import *", testing)
try:
    testing["async_isolated"]()
except ImportError as exc:
    assert 'pip install "sessionscope[asyncio]"' in str(exc), exc
else:
    raise AssertionError("async_isolated worked without greenlet")
with testing["isolated"](manager):
    with session_scope() as session:
        session.execute(text("INSERT INTO t VALUES (2)"))
assert count() == 1, "the isolation left its row behind"
print("ok: sync works, async names explain what to install")
"""


def test_sync_api_without_greenlet(tmp_path: Path) -> None:
    block = importlib.util.find_spec("greenlet") is not None
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT.format(block=block), str(tmp_path / "db.sqlite")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "ok: sync works" in result.stdout
