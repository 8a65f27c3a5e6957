"""tools/generate_sync.py, run on a small fake project in a temporary directory.

The real tree is never touched: each test writes its own ``_async`` sources,
independent of the library's, and calls ``generate(root=...)`` on them.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parent.parent

ASYNC_SOURCES = {
    "src/sessionscope/_async/__init__.py": """\
from sessionscope._async.scope import AsyncSessionScope

__all__ = ["AsyncSessionScope"]
""",
    # The imported names are sorted for the async spelling; once renamed they
    # are not, which the generator's import sorting must fix.
    "src/sessionscope/_async/scope.py": '''\
"""Scope over an AsyncSession (docstrings are not translated)."""

from __future__ import annotations

from sessionscope._async_compat import AsyncSession, Result, async_sessionmaker


class AsyncSessionScope:
    def __init__(self, factory: async_sessionmaker[AsyncSession]) -> None:
        self._factory = factory

    async def __aenter__(self) -> AsyncSession:
        self._session = self._factory()
        await self._session.begin()
        return self._session

    async def __aexit__(self, *exc_info: object) -> None:
        async with self._session:
            await self._session.commit()

    async def first(self) -> Result:
        return await self._session.execute("SELECT 1")
''',
    "tests/_async/__init__.py": "",
    "tests/_async/test_scope.py": """\
from sessionscope._async.scope import AsyncSessionScope


async def test_name() -> None:
    assert AsyncSessionScope.__name__ == "AsyncSessionScope"
""",
}

SCOPE = "src/sessionscope/_sync/scope.py"
GENERATED = [
    "src/sessionscope/_sync/__init__.py",
    SCOPE,
    "tests/_sync/__init__.py",
    "tests/_sync/test_scope.py",
]


@pytest.fixture(scope="module")
def generator() -> ModuleType:
    path = REPO / "tools" / "generate_sync.py"
    spec = importlib.util.spec_from_file_location("generate_sync_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


# The replacements the small sources above use: the generator refuses unused ones.
USED = ("AsyncSession", "async_sessionmaker", "AsyncSessionScope", "_async", "_async_compat")


@pytest.fixture(autouse=True)
def used_replacements(generator: ModuleType, monkeypatch: pytest.MonkeyPatch) -> None:
    table = {name: generator.REPLACEMENTS[name] for name in USED}
    monkeypatch.setattr(generator, "REPLACEMENTS", table)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A fake repo: the real pyproject.toml (for ruff's config) and small async sources."""
    shutil.copyfile(REPO / "pyproject.toml", tmp_path / "pyproject.toml")
    for rel, text in ASYNC_SOURCES.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text, encoding="utf-8")
    return tmp_path


@pytest.fixture
def generated(generator: ModuleType, project: Path, capsys: pytest.CaptureFixture[str]) -> Path:
    assert generator.generate(root=project) == 0
    capsys.readouterr()
    return project


def snapshot(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_generates_translated_files(generated: Path) -> None:
    files = sorted(p.relative_to(generated).as_posix() for p in generated.rglob("_sync/**/*.py"))
    assert files == sorted(GENERATED)
    for rel in GENERATED:
        text = (generated / rel).read_text(encoding="utf-8")
        source = rel.replace("_sync", "_async")
        assert text.startswith(f"# Generated from {source}\n# by tools/generate_sync.py")
        compile(text, rel, "exec")

    scope = (generated / SCOPE).read_text(encoding="utf-8")
    assert "from sessionscope._sync_compat import Result, Session, sessionmaker\n" in scope
    assert "class SessionScope:" in scope
    assert "def __init__(self, factory: sessionmaker[Session]) -> None:" in scope
    assert "def __enter__(self) -> Session:" in scope
    assert "        with self._session:\n            self._session.commit()" in scope
    assert '"""Scope over an AsyncSession (docstrings are not translated)."""' in scope
    assert "await" not in scope
    assert "async " not in scope

    test = (generated / "tests/_sync/test_scope.py").read_text(encoding="utf-8")
    assert "from sessionscope._sync.scope import SessionScope\n" in test
    assert "def test_name() -> None:" in test
    assert 'assert SessionScope.__name__ == "SessionScope"' in test


def test_check_passes_right_after_generating(
    generator: ModuleType, generated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = snapshot(generated)
    assert generator.generate(check=True, root=generated) == 0
    assert "up to date" in capsys.readouterr().out
    assert snapshot(generated) == before


def test_generating_twice_gives_the_same_files(generator: ModuleType, generated: Path) -> None:
    before = snapshot(generated)
    assert generator.generate(root=generated) == 0
    assert snapshot(generated) == before


def _hand_edit(root: Path) -> str:
    path = root / SCOPE
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("commit()", "rollback()"), encoding="utf-8")
    return "changed: " + SCOPE


def _add_stale(root: Path) -> str:
    (root / "tests/_sync/test_removed.py").write_text("x = 1\n", encoding="utf-8")
    return "stale (no async source): tests/_sync/test_removed.py"


def _delete(root: Path) -> str:
    (root / "tests/_sync/test_scope.py").unlink()
    return "missing: tests/_sync/test_scope.py"


@pytest.mark.parametrize("damage", [_hand_edit, _add_stale, _delete])
def test_check_reports_and_regenerating_repairs(
    generator: ModuleType,
    generated: Path,
    capsys: pytest.CaptureFixture[str],
    damage: Callable[[Path], str],
) -> None:
    pristine = snapshot(generated)
    expected_message = damage(generated)
    damaged = snapshot(generated)

    assert generator.generate(check=True, root=generated) == 1
    out = capsys.readouterr().out
    assert expected_message in out
    assert "1 file(s) out of date" in out
    assert snapshot(generated) == damaged  # --check changes nothing

    assert generator.generate(root=generated) == 0
    assert snapshot(generated) == pristine
    assert generator.generate(check=True, root=generated) == 0


def test_check_shows_a_diff(
    generator: ModuleType, generated: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _hand_edit(generated)
    assert generator.generate(check=True, root=generated) == 1
    out = capsys.readouterr().out
    assert "-            self._session.rollback()\n+            self._session.commit()" in out


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('    name = f"{x}"', "f-string in async source"),
        ("    return await(x)", "'await(' breaks unasync"),
    ],
)
def test_untranslatable_source_is_refused(
    generator: ModuleType,
    generated: Path,
    capsys: pytest.CaptureFixture[str],
    line: str,
    message: str,
) -> None:
    bad = generated / "src/sessionscope/_async/bad.py"
    bad.write_text(f"async def f(x: object) -> object:\n{line}\n    return x\n", encoding="utf-8")
    before = snapshot(generated)

    assert generator.generate(root=generated) == 2
    err = capsys.readouterr().err
    assert "src/sessionscope/_async/bad.py:2: " in err
    assert message in err
    assert snapshot(generated) == before  # a failed run leaves the tree alone


def test_an_unused_replacement_is_refused(
    generator: ModuleType,
    generated: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(generator.REPLACEMENTS, "AsyncNeverUsed", "NeverUsed")
    before = snapshot(generated)
    assert generator.generate(check=True, root=generated) == 2
    assert "REPLACEMENTS not used by any source: AsyncNeverUsed" in capsys.readouterr().err
    assert snapshot(generated) == before


def test_the_real_tree_uses_every_replacement(generator: ModuleType) -> None:
    real = importlib.util.spec_from_file_location("generate_sync_real", generator.__file__)
    assert real is not None and real.loader is not None
    module = importlib.util.module_from_spec(real)
    real.loader.exec_module(module)
    trees = [(src, sync) for src, sync in module.TREES if (REPO / src).is_dir()]
    assert module._unused_replacements(REPO, trees) == []
