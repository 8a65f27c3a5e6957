"""``python -m sessionscope demo``: see the library work on an embedded SQLite file."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sessionscope")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run a short tour on a SQLite file in a temp directory")
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from ._demo import run_demo

        return run_demo()
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
