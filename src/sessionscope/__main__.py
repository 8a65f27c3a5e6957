"""``python -m sessionscope demo``: see the library work on an embedded SQLite file.

``python -m sessionscope check [URL]``: check a database (reachable, SAVEPOINTs, latency).
"""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sessionscope")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("demo", help="run a short tour on a SQLite file in a temp directory")
    check = commands.add_parser(
        "check",
        help="check that a database is reachable and works with sessionscope",
        description="Exit status: 0 healthy, 1 unreachable or a check failed, 2 bad usage.",
    )
    check.add_argument(
        "url",
        nargs="?",
        help="database URL (default: $SESSIONSCOPE_URL); its password is never shown",
    )
    check.add_argument("--json", action="store_true", help="print one JSON object")
    check.add_argument(
        "--connect-timeout", type=int, default=5, metavar="SECONDS", help="default: 5"
    )
    arguments = parser.parse_args(argv)
    if arguments.command == "demo":
        from ._demo import run_demo

        return run_demo()
    if arguments.command == "check":
        from ._check import run_check

        return run_check(
            arguments.url, as_json=arguments.json, connect_timeout=arguments.connect_timeout
        )
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
