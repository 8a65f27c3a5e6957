"""The examples run as written."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_quickstart_runs_the_original_four_examples() -> None:
    result = subprocess.run(
        [sys.executable, str(EXAMPLES / "quickstart.py")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "async: ['ada'] - created ada" in result.stdout
    assert "sync: ['ada', 'bob'] - created bob" in result.stdout


def test_the_demo_runs() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "sessionscope", "demo"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "A savepoint rolled back inside a committed transaction" in result.stdout
    assert '"rolled_back": 1' in result.stdout
