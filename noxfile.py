"""Development and CI sessions: ``nox -l`` lists them, ``nox`` runs the default ones.

The README's test command is ``nox -s tests`` (SQLite and PostgreSQL, both flavours).
PostgreSQL comes from the local binaries (see tests/pg_server.py) or from
``SESSIONSCOPE_TEST_PG_URL``. Arguments after ``--`` go to pytest, e.g.
``nox -s tests -- -x -k savepoint --backends=sqlite``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import zipfile
from pathlib import Path

import nox

ROOT = Path(__file__).parent
PYPROJECT = nox.project.load_toml(ROOT / "pyproject.toml")
PYTHON = "3.11"  # the oldest supported, and the one the generated code is checked with
SA_21 = "sqlalchemy[asyncio]>=2.1,<2.2"
SA_20 = "sqlalchemy[asyncio]>=2.0.30,<2.1"
LINT_PATHS = [
    path
    for path in ("src", "tests", "tools", "bench", "examples", "noxfile.py")
    if (ROOT / path).exists()
]

nox.options.default_venv_backend = "uv|venv"
nox.options.download_python = "never"  # no interpreter downloads: only package indexes
nox.options.sessions = ["check_generated", "lint", "typecheck", "tests"]


def _find_pyenv_interpreters(*versions: str) -> None:
    """Let nox find pyenv-installed Pythons that are not on PATH (shims don't count)."""
    pyenv_versions = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    for version in versions:
        found = shutil.which(f"python{version}")
        if found and "/shims/" not in found:
            continue
        releases = [  # e.g. 3.12.1, not 3.13.0t (free-threaded) nor 3.12-dev
            tuple(map(int, d.name.split(".")))
            for d in pyenv_versions.glob(f"{version}.*")
            if re.fullmatch(r"\d+\.\d+\.\d+", d.name) and (d / "bin" / f"python{version}").exists()
        ]
        if releases:
            bindir = pyenv_versions / ".".join(map(str, max(releases))) / "bin"
            os.environ["PATH"] = f"{bindir}{os.pathsep}{os.environ['PATH']}"


_find_pyenv_interpreters("3.11", "3.12", "3.13")


def group(*names: str) -> tuple[str, ...]:
    return nox.project.dependency_groups(PYPROJECT, *names)


@nox.session(python=PYTHON)
def tests(session: nox.Session) -> None:
    """The full matrix: both flavours x SQLite and PostgreSQL, latest SQLAlchemy 2.1."""
    session.install(".", *group("test"), SA_21)
    session.run("pytest", *session.posargs)


@nox.session
@nox.parametrize(
    "python,sqlalchemy",
    [("3.12", SA_21), ("3.13", SA_21), ("3.11", SA_20)],
    ids=["py3.12", "py3.13", "py3.11-sqlalchemy2.0"],
)
def tests_compat(session: nox.Session, sqlalchemy: str) -> None:
    """The SQLite half of the matrix on the other Pythons, and on SQLAlchemy 2.0."""
    session.install(".", *group("test"), sqlalchemy)
    session.run("pytest", "--backends=sqlite", *session.posargs)


@nox.session(python=PYTHON)
def lint(session: nox.Session) -> None:
    session.install(*group("lint"))
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session(python=PYTHON)
def typecheck(session: nox.Session) -> None:
    session.install(*group("typecheck"))
    # pyproject's [tool.mypy] names the files: both trees, the flavour-free
    # modules and tests/typing (assert_type checks of the decorators' signatures).
    session.run("mypy", *session.posargs)


@nox.session(python=PYTHON)
def generate(session: nox.Session) -> None:
    """Regenerate src/sessionscope/_sync and tests/_sync from the _async sources."""
    session.install(*group("generate"))
    session.run("python", "tools/generate_sync.py", *session.posargs)


@nox.session(python=PYTHON)
def check_generated(session: nox.Session) -> None:
    """Fail if the committed sync code differs from what the generator makes."""
    session.install(*group("generate"))
    session.run("python", "tools/generate_sync.py", "--check", *session.posargs)


@nox.session(python=PYTHON)
def build(session: nox.Session) -> None:
    """A wheel carries a _sync generated at build time, equal to the committed one;
    building it and an editable install leave the work tree as they found it."""
    before = _git_status()
    out = Path(session.create_tmp()) / "wheel"
    shutil.rmtree(out, ignore_errors=True)
    session.install("pip")
    session.run("python", "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(out), ".")
    session.run("python", "-m", "pip", "install", "--quiet", "--no-deps", "-e", ".")
    (wheel,) = out.glob("sessionscope-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        shipped = {
            name.removeprefix("sessionscope/_sync/"): archive.read(name)
            for name in archive.namelist()
            if name.startswith("sessionscope/_sync/")
        }
    committed = {
        path.name: path.read_bytes() for path in (ROOT / "src/sessionscope/_sync").glob("*.py")
    }
    if shipped != committed:
        session.error(f"the wheel's _sync differs from the committed one: {sorted(shipped)}")
    if _git_status() != before:
        session.error("building changed the work tree:\n" + _git_status())
    session.log(f"{wheel.name}: _sync ({len(shipped)} files) as committed; work tree untouched")


def _git_status() -> str:
    done = subprocess.run(["git", "status", "--porcelain"], cwd=ROOT, capture_output=True)
    return done.stdout.decode()


@nox.session(python=PYTHON)
def bench(session: nox.Session) -> None:
    """The benchmark and its budgets (docs/architecture.md; a report, not a test):
    ``nox -s bench -- --quick``. Arguments after ``--`` go to ``python -m bench``,
    e.g. ``--json bench/results/run.json``. Writes the chart to bench/results/e2e.svg."""
    session.install(".", *group("bench"))
    session.run("python", "-m", "bench", *session.posargs)


@nox.session(python=PYTHON)
def demo(session: nox.Session) -> None:
    session.install(".[aiosqlite]")
    session.run("python", "-m", "sessionscope", "demo", *session.posargs)


@nox.session(python=PYTHON)
def nogreenlet(session: nox.Session) -> None:
    """The sync flavour imports and works with SQLAlchemy installed without greenlet."""
    session.install("--no-deps", "sqlalchemy", ".")
    session.install("typing-extensions", "pytest", "pytest-asyncio")  # none needs greenlet
    session.run("python", "-c", "import importlib.util as u; assert not u.find_spec('greenlet')")
    session.run("pytest", "tests/test_import_without_greenlet.py", *session.posargs)
