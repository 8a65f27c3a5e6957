"""Hatchling build hook: a wheel's ``sessionscope/_sync`` is generated at build time.

Enabled by ``[tool.hatch.build.hooks.custom]`` in pyproject.toml. It never
writes to the work tree:

- a wheel gets ``_sync`` generated from ``_async`` into a temporary directory
  (the committed ``src/sessionscope/_sync`` is excluded from the wheel), so a
  wheel cannot ship sync code that is stale with respect to its async source;
- an editable install uses the committed tree as it is, and warns when it
  differs from what the generator makes;
- an sdist ships the committed tree (and the sources and tools to regenerate).

The generator's pinned tools (unasync, setuptools, ruff) are the "generate"
dependency group of pyproject.toml, read here so that the pins live in one place.
CI's ``nox -s check_generated`` remains the gate for the committed tree.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
import tempfile
import tomllib
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface

PACKAGE_TREE = ("src/sessionscope/_async", "src/sessionscope/_sync")


class GenerateSyncHook(BuildHookInterface[BuilderConfig]):
    PLUGIN_NAME = "custom"

    def dependencies(self) -> list[str]:
        if self.target_name != "wheel":
            return []
        return _group(Path(self.root) / "pyproject.toml", "generate")

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        # An sdist ships the committed tree; one without the async sources (a
        # trimmed copy) has nothing to generate from, so its _sync is used as is.
        if self.target_name != "wheel" or not (root / PACKAGE_TREE[0]).is_dir():
            return
        generator = _load(root / "tools" / "generate_sync.py")
        try:
            rendered = generator.render(root, [PACKAGE_TREE])
        except generator.GenerateError as exc:
            raise RuntimeError(
                f"tools/generate_sync.py failed: {exc}; the build stops rather than "
                "ship stale sync code"
            ) from None
        if version == "editable":
            self._warn_if_stale(root, rendered)
            return
        self._generated = Path(tempfile.mkdtemp(prefix="sessionscope-sync-"))
        for rel, text in rendered.items():
            (self._generated / rel).parent.mkdir(parents=True, exist_ok=True)
            (self._generated / rel).write_text(text, encoding="utf-8")
            # "src/sessionscope/_sync/x.py" is "sessionscope/_sync/x.py" in the wheel
            build_data["force_include"][str(self._generated / rel)] = rel.removeprefix("src/")

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        generated = getattr(self, "_generated", None)
        if generated is not None:
            shutil.rmtree(generated, ignore_errors=True)

    def _warn_if_stale(self, root: Path, rendered: dict[str, str]) -> None:
        committed = {
            path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
            for path in (root / PACKAGE_TREE[1]).rglob("*.py")
        }
        if committed != rendered:
            self.app.display_warning(
                "src/sessionscope/_sync differs from what its _async source generates; "
                "this editable install uses it as it is. Run: python tools/generate_sync.py"
            )


def _group(pyproject: Path, name: str) -> list[str]:
    """The requirements of a PEP 735 dependency group, its included groups resolved."""
    groups = tomllib.loads(pyproject.read_text(encoding="utf-8"))["dependency-groups"]
    found: list[str] = []
    for item in groups[name]:
        found.extend(_group(pyproject, item["include-group"]) if isinstance(item, dict) else [item])
    return found


def _load(path: Path) -> ModuleType:
    # tools/ is not a package, and the build runs from any directory: import by path.
    spec = importlib.util.spec_from_file_location("sessionscope_generate_sync", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as a normal import would, for dataclasses & co
    spec.loader.exec_module(module)
    return module
