"""Hatchling build hook: regenerate the sync code before every build.

Enabled by ``[tool.hatch.build.hooks.custom]`` in pyproject.toml. It runs
tools/generate_sync.py for wheel, editable and sdist builds alike, so a
distribution can never ship ``_sync`` code that is stale with respect to
``_async``; if generation fails, so does the build.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

from hatchling.builders.config import BuilderConfig
from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class GenerateSyncHook(BuildHookInterface[BuilderConfig]):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        # An sdist built without the async sources has nothing to regenerate: its
        # committed _sync code is all there is.
        if not (root / "src" / "sessionscope" / "_async").is_dir():
            return
        generator = _load(root / "tools" / "generate_sync.py")
        if generator.generate(root=root) != 0:
            raise RuntimeError(
                "tools/generate_sync.py failed (see its message above); "
                "the build stops rather than ship stale sync code"
            )


def _load(path: Path) -> ModuleType:
    # tools/ is not a package, and the build runs from any directory: import by path.
    spec = importlib.util.spec_from_file_location("sessionscope_generate_sync", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # as a normal import would, for dataclasses & co
    spec.loader.exec_module(module)
    return module
