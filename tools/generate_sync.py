"""Generate sessionscope's synchronous code from its async source.

Only ``_async/`` is written by hand; ``unasync`` 0.6.0 translates it into the
committed ``_sync/`` trees, so the two flavours cannot drift apart::

    python tools/generate_sync.py           # delete and regenerate the _sync/ trees
    python tools/generate_sync.py --check   # report differences, change nothing

All output is produced in a temporary directory first: unasync given relative
paths can overwrite its own input, and a failed run must leave the tree as it
was. Each file then gets a "do not edit" header, re-sorted imports (renaming
breaks their order) and ``ruff format``, so it is what the linters expect.

Exit codes: 0 success, 1 ``--check`` found differences, 2 error.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import importlib.util
import itertools
import shutil
import subprocess
import sys
import tempfile
import tokenize
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Names unasync must rename, on top of its own short table (__aenter__, ...).
# Any other ``AsyncXxx`` name becomes ``SyncXxx``, which is wrong for every
# SQLAlchemy name, so each async name the sources use needs a line here.
# A string whose whole text is one of these names is renamed too.
REPLACEMENTS: dict[str, str] = {
    # SQLAlchemy
    "AsyncSession": "Session",
    "async_sessionmaker": "sessionmaker",
    "create_async_engine": "create_engine",
    "AsyncEngine": "Engine",
    "AsyncSessionTransaction": "SessionTransaction",
    # sessionscope
    "AsyncSessionManager": "SessionManager",
    "AsyncSessionScope": "SessionScope",
    "AsyncScopedSession": "ScopedSession",
    "async_session_scope": "session_scope",
    "async_with_session": "with_session",
    "AsyncIsolation": "Isolation",
    "async_isolated": "isolated",
    # modules: each part of a dotted name is a token of its own
    "_async": "_sync",
    "_async_compat": "_sync_compat",
    # standard library (unasync knows AsyncIterator, StopAsyncIteration and the like)
    "athrow": "throw",
}

# (hand-written async tree, generated sync tree), relative to the repo root.
TREES: tuple[tuple[str, str], ...] = (
    ("src/sessionscope/_async", "src/sessionscope/_sync"),
    ("tests/_async", "tests/_sync"),
)

# Three short lines: a long source path must not push a line past ruff's limit.
HEADER = (
    "# Generated from {source}\n"
    "# by tools/generate_sync.py: do not edit.\n"
    "# Edit the file under _async/ and run: python tools/generate_sync.py\n"
)

DIFF_LIMIT = 40  # diff lines shown per changed file by --check

# Python 3.12 splits an f-string into several tokens; 3.11 keeps it one STRING.
_FSTRING_START: int | None = getattr(tokenize, "FSTRING_START", None)

Trees = list[tuple[str, str]]


class GenerateError(Exception):
    """A problem with the sources or the toolchain: exit code 2."""


def generate(check: bool = False, root: Path = ROOT) -> int:
    """Regenerate the ``_sync`` trees under ``root``, or with ``check`` compare them."""
    root = root.resolve()
    # A tree whose _async side is absent (say, an sdist without tests) is left alone.
    trees = [(src, sync) for src, sync in TREES if (root / src).is_dir()]
    try:
        expected = render(root, trees)
    except GenerateError as exc:
        print(f"generate_sync: error: {exc}", file=sys.stderr)
        return 2
    unused = _unused_replacements(root, trees)
    if unused:
        print(
            f"generate_sync: error: REPLACEMENTS not used by any source: {', '.join(unused)}; "
            "remove them, so the table says what the translation really needs",
            file=sys.stderr,
        )
        return 2
    if check:
        return _report(expected, _committed(root, trees))
    for _, sync in trees:
        shutil.rmtree(root / sync, ignore_errors=True)
    for rel, text in expected.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text, encoding="utf-8")
    print(f"generate_sync: wrote {len(expected)} files to {', '.join(s for _, s in trees)}")
    return 0


def render(root: Path, trees: Trees) -> dict[str, str]:
    """Return {repo-relative sync path: final text} for every async source.

    Writes nothing under ``root``: the build hook puts the result in the wheel.
    """
    sources: dict[str, str] = {}  # sync path -> async path, both repo-relative
    for src, sync in trees:
        for path in sorted((root / src).rglob("*.py")):
            if "__pycache__" not in path.parts:
                inner = path.relative_to(root / src).as_posix()
                sources[f"{sync}/{inner}"] = f"{src}/{inner}"
    if not sources:
        raise GenerateError(f"no _async sources under {root}")
    _require_tools()
    for source in sources.values():
        _refuse_untranslatable(root, source)

    rendered: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="generate_sync-") as tmp:
        for rel, text in _unasync(root, Path(tmp), trees, sources).items():
            try:  # before the header is added, so line numbers match the source
                compile(text, rel, "exec", dont_inherit=True)
            except SyntaxError as exc:
                raise GenerateError(
                    f"{sources[rel]}:{exc.lineno}: unasync made invalid code: {exc.msg}"
                ) from None
            text = HEADER.format(source=sources[rel]) + text
            # ruff reads the text from stdin under the file's final name, so the
            # repo's config (first-party packages, per-file ignores) applies as in CI.
            text = _ruff(root, rel, text, "check", "--fix", "--select", "I,F401", "--exit-zero")
            rendered[rel] = _ruff(root, rel, text, "format")
    return rendered


def _refuse_untranslatable(root: Path, source: str) -> None:
    """Fail on code that unasync 0.6.0 would translate wrongly or unpredictably."""
    code = (root / source).read_text(encoding="utf-8")
    try:
        compile(code, source, "exec", dont_inherit=True)
    except SyntaxError as exc:
        raise GenerateError(f"{source}:{exc.lineno}: {exc.msg}") from None
    tokens = tokenize.generate_tokens(iter(code.splitlines(keepends=True)).__next__)
    for tok, nxt in itertools.pairwise(tokens):
        where = f"{source}:{tok.start[0]}"
        # unasync renames names inside f-strings on Python 3.12+ but not on 3.11,
        # so the committed output would depend on which Python generated it.
        if tok.type == _FSTRING_START or _is_fstring(tok):
            raise GenerateError(
                f"{where}: f-string in async source; unasync translates f-strings "
                "differently on Python 3.11 and 3.12: use str.format() or %-formatting"
            )
        # unasync drops the token after "await" expecting a space: "await(x)" loses "(".
        adjacent = nxt.start == tok.end and nxt.type not in (tokenize.NL, tokenize.NEWLINE)
        if tok.type == tokenize.NAME and tok.string in ("async", "await") and adjacent:
            raise GenerateError(
                f"{where}: '{tok.string}{nxt.string}' breaks unasync: "
                f"put a space after '{tok.string}'"
            )


def _unused_replacements(root: Path, trees: Trees) -> list[str]:
    """The names of REPLACEMENTS that no source spells, as a name or a whole string."""
    spelled: set[str] = set()
    for src, _ in trees:
        for path in (root / src).rglob("*.py"):
            code = path.read_text(encoding="utf-8")
            for tok in tokenize.generate_tokens(iter(code.splitlines(keepends=True)).__next__):
                if tok.type == tokenize.NAME:
                    spelled.add(tok.string)
                elif tok.type == tokenize.STRING:
                    spelled.add(tok.string.strip("'\""))
    return sorted(set(REPLACEMENTS) - spelled)


def _is_fstring(tok: tokenize.TokenInfo) -> bool:
    """Whether ``tok`` is a whole f-string, as Python 3.11 tokenizes it."""
    if tok.type != tokenize.STRING:
        return False
    quoted = tok.string.lstrip("rRbBuUfF")  # the prefix letters end at the first quote
    return "f" in tok.string[: len(tok.string) - len(quoted)].lower()


def _require_tools() -> None:
    """Name every missing tool at once, before any work: the tool needs all three."""
    missing = [
        name for name in ("unasync", "setuptools", "ruff") if importlib.util.find_spec(name) is None
    ]
    if missing:
        raise GenerateError(
            f"ModuleNotFoundError: No module named {missing[0]!r} (missing: {', '.join(missing)}); "
            "install pyproject.toml's pinned 'generate' group (pip >= 25.1: "
            "pip install --group generate), or run it: nox -s check_generated / nox -s generate"
        )


def _unasync(root: Path, tmp: Path, trees: Trees, sources: dict[str, str]) -> dict[str, str]:
    """Run unasync on copies of the sources in ``tmp``; return {sync path: text}."""
    try:
        unasync: Any = importlib.import_module("unasync")  # untyped; imports setuptools
    except ImportError as exc:
        raise GenerateError(
            f"cannot import unasync ({exc}): pip install --group generate"
        ) from None
    for source in sources.values():
        (tmp / source).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(root / source, tmp / source)
    # Absolute directories ending in a separator: unasync matches rules by path
    # segments and derives the output path with a plain str.replace.
    rules = [
        unasync.Rule(f"{tmp / src}/", f"{tmp / sync}/", additional_replacements=REPLACEMENTS)
        for src, sync in trees
    ]
    unasync.unasync_files([str(tmp / source) for source in sources.values()], rules)
    return {rel: (tmp / rel).read_text(encoding="utf-8") for rel in sources}


def _ruff(root: Path, rel: str, text: str, *args: str) -> str:
    command = [sys.executable, "-m", "ruff", *args, "--quiet", "--stdin-filename", str(root / rel)]
    done = subprocess.run(
        [*command, "-"], input=text, capture_output=True, text=True, cwd=root, check=False
    )
    if done.returncode != 0:
        raise GenerateError(f"ruff {args[0]} failed on {rel}:\n{done.stderr.strip()}")
    return done.stdout


def _committed(root: Path, trees: Trees) -> dict[str, str]:
    """Return {repo-relative path: text} of the .py files now in the sync trees."""
    found: dict[str, str] = {}
    for _, sync in trees:
        for path in sorted((root / sync).rglob("*.py")):
            if "__pycache__" not in path.parts:
                found[path.relative_to(root).as_posix()] = path.read_text(encoding="utf-8")
    return found


def _report(expected: dict[str, str], actual: dict[str, str]) -> int:
    """Print every missing, stale and changed file; return the exit code."""
    problems = 0
    for rel in sorted(expected.keys() | actual.keys()):
        if rel not in actual:
            print(f"generate_sync: missing: {rel}")
        elif rel not in expected:
            print(f"generate_sync: stale (no async source): {rel}")
        elif actual[rel] != expected[rel]:
            print(f"generate_sync: changed: {rel}")
            old, new = actual[rel].splitlines(), expected[rel].splitlines()
            diff = list(difflib.unified_diff(old, new, "committed", "generated", lineterm=""))
            print("\n".join(diff[:DIFF_LIMIT]))
            if len(diff) > DIFF_LIMIT:
                print(f"... {len(diff) - DIFF_LIMIT} more diff lines")
        else:
            continue
        problems += 1
    if problems:
        print(f"generate_sync: {problems} file(s) out of date; run: python tools/generate_sync.py")
        return 1
    print(f"generate_sync: {len(expected)} generated files are up to date")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Generate _sync/ from _async/ with unasync.")
    parser.add_argument("--check", action="store_true", help="report differences, change nothing")
    return generate(check=parser.parse_args(argv).check)


if __name__ == "__main__":
    sys.exit(main())
