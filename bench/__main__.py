"""sessionscope's benchmark: what the library costs over SQLAlchemy (the budgets of
docs/architecture.md, printed as verdicts at the end).

Run from the repository root, with sessionscope installed (``nox -s bench`` does both)::

    python -m bench                        # everything, about 4 minutes on 2 cores
    python -m bench --quick                # a smoke run for CI, well under a minute
    python -m bench --sections overhead,memory --backends sqlite
    python -m bench --json bench/results/$(date +%F).json

Sections:

e2e          one unit of work (SELECT by key + UPDATE + COMMIT on a 1000-row table)
             through the raw driver, raw SQLAlchemy (``sessionmaker.begin()``),
             ``session_scope`` with monitoring on and off, and ``@with_session``:
             per flavour (sync, async) x backend (SQLite file, PostgreSQL), in
             interleaved rounds, and the peers users would pick instead
             (advanced-alchemy, fastapi-sqla: bench/peers.py) on the same engine;
             median and min of the per-round means, and the
             ratio to raw SQLAlchemy (paired: the median of the per-round ratios;
             the ratio of the medians beside it). The SQLite file runs in WAL mode with
             synchronous=NORMAL, so that no fsync drowns the code's cost
             (``--sqlite-durable``: SQLite's defaults instead). Then what each
             variant sent and asked of the pool (bench/wire.py), and the chart
             of the ratios (``--chart``, an SVG; bench/chart.py).
overhead     µs a scope adds over raw SQLAlchemy around ``SELECT 1`` on in-memory
             SQLite: (a) over raw SQLAlchemy emitting the same BEGIN
             (sessionscope's Python code only), (b) over raw SQLAlchemy without
             it (also the real SQLite transaction).
gap          why our code costs more inside the sync PostgreSQL unit than alone:
             a fixed piece of Python timed alone and once per unit (CPU time),
             beside what the scope adds there (from e2e) and alone (overhead).
concurrency  PostgreSQL throughput, raw SQLAlchemy vs ``session_scope``: async
             200 tasks over a pool of 10, sync 8 threads over a pool of 8.
memory       RSS and tracemalloc growth over 100,000 scopes (monitoring on).
testing      what isolating a test costs (sessionscope.testing.isolated) against
             emptying the tables it touched and against re-creating them.
latency      PostgreSQL behind a loopback proxy adding ``--rtt`` ms (1) per round
             trip, as a database on another machine: the e2e unit of work again
             (every variant, both flavours), and read-only scopes reading one row:
             raw ``engine.begin()``, a READ ONLY transaction, and the read-only
             fast path (no BEGIN, no COMMIT).
instructions (only when asked for) own code per sync scope in instructions, counted
             by valgrind's callgrind: repeatable where timings are not.
profile      (only when asked for) cProfile of a sync scope: sessionscope's
             functions by own time.

PostgreSQL is the tests' throwaway server (tests/pg_server.py: local binaries,
or ``SESSIONSCOPE_TEST_PG_URL``). Without it the PostgreSQL parts are skipped,
unless ``CI`` is set, where that is an error. The budgets are reported, not
enforced: the exit code is 0 whether they hold or not, nonzero only on errors
(including a unit of work that did not commit).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import importlib.metadata
import importlib.util
import json
import logging
import os
import platform
import random
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import sqlalchemy
from tests.pg_server import PostgresServer, PostgresUnavailable

import sessionscope

from .chart import write_chart
from .concurrency import ConcurrencyResult, Settings, run_concurrency
from .e2e import GroupResult, describe, run_group
from .fast_read import FastRead, round_trip, run_fast_read
from .gap import run_gap
from .harness import Budget, format_table
from .instructions import run_instructions
from .isolation_cost import IsolationCost, run_isolation_cost
from .latency_proxy import LatencyProxy
from .memory_growth import run_memory
from .overhead import OverheadResult, run_overhead
from .peers import PEERS, missing_peers
from .profile_scope import run_profile
from .workload import Database

ROOT = Path(__file__).resolve().parent.parent


SECTIONS = (
    "e2e",
    "overhead",
    "gap",
    "concurrency",
    "memory",
    "testing",
    "latency",
    "instructions",
    "profile",
)
DEFAULT_SECTIONS = "e2e,overhead,gap,concurrency,memory,testing,latency"
BACKENDS = ("sqlite", "postgres")
FLAVOURS = ("sync", "async")

# The budgets of docs/architecture.md.
OWN_CODE_US = 5.0
E2E_RATIO = {  # session_scope, monitoring on / raw SQLAlchemy
    "sync/postgres": 1.01,
    "async/postgres": 1.00,
    "sync/sqlite": 1.05,
    "async/sqlite": 1.05,
}
FAST_PATH_SPEED_UP = 2.0  # raw engine.begin() / the fast path, at 1 ms round trip
CONCURRENCY_RATIO = 0.97
DEFAULT_CHART = ROOT / "bench" / "results" / "e2e.svg"


# -- options ----------------------------------------------------------------------------


def _names(choices: Sequence[str]) -> Any:
    def parse(value: str) -> list[str]:
        names = [name.strip() for name in value.split(",") if name.strip()]
        unknown = sorted(set(names) - set(choices))
        if unknown or not names:
            raise argparse.ArgumentTypeError(
                f"unknown: {', '.join(unknown) or 'empty list'}; choose from {', '.join(choices)}"
            )
        return [name for name in choices if name in names]  # canonical order

    return parse


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        epilog="See the docstring of bench/__main__.py for what each section measures.",
    )
    parser.add_argument("--quick", action="store_true", help="few rounds, small batches (CI smoke)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 31; quick 3)")
    parser.add_argument(
        "--batch",
        type=int,
        help="units per batch in e2e (default 100; quick 40); overhead runs 5x as many",
    )
    parser.add_argument(
        "--sections",
        type=_names(SECTIONS),
        default=DEFAULT_SECTIONS,
        help=f"comma-separated, from {', '.join(SECTIONS)} (default {DEFAULT_SECTIONS})",
    )
    parser.add_argument(
        "--backends",
        type=_names(BACKENDS),
        default="sqlite,postgres",
        help="for e2e and concurrency: sqlite, postgres (default both)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        help="concurrency: seconds per variant and round (default 3; quick 0.5)",
    )
    parser.add_argument(
        "--concurrency-rounds", type=int, help="concurrency rounds (default 4; quick 2)"
    )
    parser.add_argument(
        "--memory-scopes", type=int, help="scopes per memory pass (default 100000; quick 5000)"
    )
    parser.add_argument(
        "--sqlite-durable",
        action="store_true",
        help="e2e on SQLite with its defaults (rollback journal, an fsync per COMMIT) "
        "instead of WAL with synchronous=NORMAL",
    )
    parser.add_argument(
        "--rtt",
        type=float,
        default=1.0,
        help="latency: round-trip time the latency proxy adds, in ms (default 1)",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=DEFAULT_CHART,
        metavar="PATH",
        help="where the chart of the e2e ratios goes (an SVG; default bench/results/e2e.svg)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write all results here")
    args = parser.parse_args(argv)
    if isinstance(args.sections, str):
        args.sections = _names(SECTIONS)(args.sections)
    if isinstance(args.backends, str):
        args.backends = _names(BACKENDS)(args.backends)
    quick = args.quick

    def default(value: Any, normal: Any, fast: Any) -> Any:
        return value if value is not None else (fast if quick else normal)

    args.rounds = default(args.rounds, 31, 3)
    args.batch = default(args.batch, 100, 40)
    args.duration = default(args.duration, 3.0, 0.5)
    args.concurrency_rounds = default(args.concurrency_rounds, 4, 2)
    args.memory_scopes = default(args.memory_scopes, 100_000, 5_000)
    for name in ("rounds", "batch", "concurrency_rounds", "memory_scopes"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if args.duration <= 0:
        parser.error("--duration must be positive")
    return args


# -- environment ------------------------------------------------------------------------


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _git_revision() -> str | None:
    try:
        head = subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        changed = subprocess.run(
            ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src", "bench"],
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + (" + uncommitted changes in src/ or bench/" if changed else "")


def environment() -> dict[str, Any]:
    libpq = None
    with contextlib.suppress(ImportError):
        import psycopg

        number = psycopg.pq.version()  # e.g. 150010 for 15.10
        libpq = f"{number // 10000}.{number % 10000} ({psycopg.pq.__impl__})"
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    return {
        "python": f"{platform.python_version()} ({platform.python_implementation()})",
        "platform": platform.platform(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "sessionscope": sessionscope.__version__,
        "sessionscope_path": str(Path(sessionscope.__file__).parent),
        "git": _git_revision(),
        "sqlalchemy": sqlalchemy.__version__,
        "greenlet": _version("greenlet"),
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": _version("aiosqlite"),
        "psycopg": _version("psycopg"),
        "libpq": libpq,
        "asyncpg": _version("asyncpg"),
        "postgresql": None,  # filled in once the server runs
    }


def print_environment(env: dict[str, Any], args: argparse.Namespace) -> None:
    rows = [
        ["python", f"{env['python']} on {env['platform']}"],
        ["cpu", f"{env['cores']} cores ({env['usable_cores']} usable): {env['cpu']}"],
        ["sessionscope", f"{env['sessionscope']} from {env['sessionscope_path']}"],
        ["git", env["git"] or "unknown"],
        ["sqlalchemy", f"{env['sqlalchemy']} (greenlet {env['greenlet']})"],
        [
            "drivers",
            f"sqlite3 (SQLite {env['sqlite']}), aiosqlite {env['aiosqlite']}, "
            f"psycopg {env['psycopg']} (libpq {env['libpq']}), asyncpg {env['asyncpg']}",
        ],
        [
            "settings",
            f"sections {','.join(args.sections)}; backends {','.join(args.backends)}; "
            f"{args.rounds} rounds x {args.batch} units (overhead {5 * args.batch}); "
            f"concurrency {args.concurrency_rounds} rounds x {args.duration:g} s; "
            f"memory {args.memory_scopes:,} scopes; seed {args.seed}"
            + ("; quick" if args.quick else ""),
        ],
    ]
    print("sessionscope benchmark, " + datetime.datetime.now(datetime.UTC).strftime("%F %T UTC"))
    for name, value in rows:
        print(f"  {name:<13}{value}")
    sys.stdout.flush()


# -- PostgreSQL -------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_server(env: dict[str, Any]) -> Iterator[PostgresServer | None]:
    """The tests' throwaway server (or $SESSIONSCOPE_TEST_PG_URL); None if unavailable."""
    server = PostgresServer.from_env()
    try:
        server.start()
    except PostgresUnavailable as exc:
        if os.environ.get("CI"):
            raise RuntimeError(f"PostgreSQL is required when CI is set: {exc}") from exc
        print(f"\nPostgreSQL is not available, its parts are skipped: {exc}")
        yield None
        return
    try:
        with server.connect() as connection:
            row = connection.execute("SHOW server_version").fetchone()
        kind = "throwaway" if server.managed else "external"
        env["postgresql"] = f"{row[0] if row else '?'}, {kind} at {server.host}:{server.port}"
        print(f"  {'postgresql':<13}{env['postgresql']}")
        yield server
    finally:
        server.close()


# -- what sessionscope logs -------------------------------------------------------------


class LogTally(logging.Handler):
    """Collects the ``sessionscope`` logger's records, to summarise them per section
    (a slow-transaction warning is news, but not in the middle of a table)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: dict[tuple[str, object], list[logging.LogRecord]] = {}

    def emit(self, record: logging.LogRecord) -> None:
        self.records.setdefault((record.levelname, record.msg), []).append(record)

    def summary(self) -> list[str]:
        """One line per kind of record since the last call (count, then an example)."""
        lines = [
            f"  sessionscope logged {len(records)} x {level}, e.g.: {records[-1].getMessage()}"
            for (level, _), records in self.records.items()
        ]
        self.records.clear()
        return lines

    @contextlib.contextmanager
    def installed(self) -> Iterator[LogTally]:
        logger = logging.getLogger("sessionscope")
        propagate = logger.propagate
        logger.addHandler(self)
        logger.propagate = False
        try:
            yield self
        finally:
            logger.removeHandler(self)
            logger.propagate = propagate


# -- sections ---------------------------------------------------------------------------


@dataclasses.dataclass
class Report:
    """Everything measured so far, for the budgets and the JSON document."""

    args: argparse.Namespace
    env: dict[str, Any]
    rng: random.Random
    log: LogTally
    results: dict[str, Any] = dataclasses.field(default_factory=dict)
    seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    e2e: list[GroupResult] = dataclasses.field(default_factory=list)
    overhead: list[OverheadResult] = dataclasses.field(default_factory=list)
    concurrency: list[ConcurrencyResult] = dataclasses.field(default_factory=list)
    testing: list[IsolationCost] = dataclasses.field(default_factory=list)
    fast_read: FastRead | None = None

    @contextlib.contextmanager
    def section(self, name: str, title: str) -> Iterator[None]:
        print(f"\n== {title} " + "=" * max(0, 76 - len(title)))
        sys.stdout.flush()
        start = time.perf_counter()
        yield
        self.seconds[name] = time.perf_counter() - start
        for line in self.log.summary():
            print(line)

    def show(self, heading: str, body: str) -> None:
        print(f"\n{heading}\n{body}" if heading else body)
        sys.stdout.flush()


def run_e2e(report: Report, databases: list[Database]) -> None:
    args = report.args
    title = (
        "end to end: µs per unit of work (SELECT + UPDATE + COMMIT), "
        f"{args.rounds} rounds x {args.batch} units"
    )
    with report.section("e2e", title):
        if not databases:
            report.show("", "  skipped: no database (see --backends)")
        for database in databases:
            for flavour in FLAVOURS:
                group = run_group(
                    flavour, database, rounds=args.rounds, batch=args.batch, rng=report.rng
                )
                report.e2e.append(group)
                report.show(describe(flavour, database), group.table())
        report.results["e2e"] = {group.name: group.as_json() for group in report.e2e}
        for missing in missing_peers():
            report.show("", f"  {missing} is not installed: its rows are missing (bench group)")


def run_overhead_section(report: Report) -> None:
    args = report.args
    batch = 5 * args.batch
    title = (
        "own-code overhead: µs per scope around SELECT 1, in-memory SQLite, "
        f"{args.rounds} rounds x {batch} scopes"
    )
    with report.section("overhead", title):
        report.show(
            "",
            "  (a) over raw SQLAlchemy emitting the same BEGIN (real transactions): "
            "sessionscope's Python code\n"
            "  (b) over raw SQLAlchemy without it: everything, the real SQLite "
            "transaction included",
        )
        for flavour in FLAVOURS:
            result = run_overhead(flavour, rounds=args.rounds, batch=batch, rng=report.rng)
            report.overhead.append(result)
            driver = "sqlite3" if flavour == "sync" else "aiosqlite"
            report.show(f"{flavour} ({driver}, StaticPool)", result.table())
        report.results["overhead"] = {r.flavour: r.as_json() for r in report.overhead}


def run_gap_section(report: Report, postgres: Database | None) -> None:
    args = report.args
    title = "gap: a microsecond of Python alone, and inside a sync PostgreSQL unit of work"
    with report.section("gap", title):
        if postgres is None:
            report.show("", "  skipped: needs PostgreSQL (--backends postgres)")
            return
        gap = run_gap(postgres, rounds=args.rounds, batch=args.batch, rng=report.rng)
        lines = [gap.report()]
        group = next((g for g in report.e2e if g.name == "sync/postgres"), None)
        overhead = next((r for r in report.overhead if r.flavour == "sync"), None)
        if group is not None and overhead is not None:
            alone = overhead.added("scope_monitoring_on", "raw_hooked_engine")
            inside = (
                group.series["scope_monitoring_on"].cpu_median
                - group.series["raw_sqlalchemy"].cpu_median
            )
            lines.append(
                f"  session_scope's own code (monitoring on): {alone:.1f} µs alone (overhead, "
                f"(a)); {inside:+.1f} µs of CPU in the unit (e2e): {inside / alone:.1f}x"
            )
        report.show("", "\n".join(lines))
        report.results["gap"] = gap.as_json()


def run_concurrency_section(report: Report, postgres: Database | None) -> None:
    args = report.args
    title = (
        "concurrency (PostgreSQL): units of work per second, "
        f"{args.concurrency_rounds} rounds x {args.duration:g} s per variant"
    )
    with report.section("concurrency", title):
        if postgres is None:
            report.show("", "  skipped: needs PostgreSQL (--backends postgres)")
            return
        settings = Settings(
            duration=args.duration, rounds=args.concurrency_rounds, warmup=min(args.duration, 1)
        )
        for flavour in ("async", "sync"):
            outcome = run_concurrency(flavour, postgres, settings, report.rng)
            report.concurrency.append(outcome)
            report.show(f"{flavour}: {outcome.workers}", outcome.table())
        report.results["concurrency"] = {r.flavour: r.as_json() for r in report.concurrency}


def run_memory_section(report: Report) -> None:
    scopes = report.args.memory_scopes
    title = "memory: sync session_scope around SELECT 1, monitoring on, in-memory SQLite"
    with report.section("memory", title):
        memory = run_memory(scopes, warmup=max(1000, min(5000, scopes // 20)))
        report.show("", memory.report())
        report.results["memory"] = memory.as_json()


def run_testing_section(report: Report, databases: list[Database]) -> None:
    title = "testing: the cost of isolating one test (sync, 3 rows written and read)"
    with report.section("testing", title):
        rounds = 3 if report.args.quick else max(5, report.args.rounds // 3)
        results = {}
        for database in databases:
            cost = run_isolation_cost(
                database, rounds=rounds, tests=10 if report.args.quick else 30
            )
            report.show("", cost.report())
            report.testing.append(cost)
            results[database.backend] = cost.as_json()
        report.results["testing"] = results


def run_latency_section(report: Report, server: Any, postgres: Database) -> None:
    args = report.args
    rtt = args.rtt
    title = f"latency: PostgreSQL behind a proxy adding {rtt:g} ms per round trip"
    with report.section("latency", title):
        rounds = 3 if args.quick else max(5, args.rounds // 2)
        batch = 5 if args.quick else 20
        with LatencyProxy(server.host, server.port, rtt / 1000) as proxy:
            measured = round_trip(proxy.url(postgres.sync_url)) * 1000
            far = postgres.through(proxy, rtt, measured)
            report.show(
                "",
                f"  round trip through the proxy: {measured:.2f} ms; the e2e unit of work, "
                f"{rounds} rounds x {batch} units",
            )
            for flavour in FLAVOURS:
                group = run_group(
                    flavour, far, rounds=rounds, batch=batch, rng=report.rng, wire=False
                )
                report.e2e.append(group)
                report.show(describe(flavour, far), group.table())
        fast = run_fast_read(
            server,
            rtt=rtt / 1000,
            rounds=3 if args.quick else max(5, args.rounds // 3),
            scopes=10 if args.quick else 50,
        )
        report.fast_read = fast
        report.show("\nread-only scopes reading one row by primary key", fast.report())
        report.results["latency"] = {
            "e2e": {g.name: g.as_json() for g in report.e2e if g.database.rtt_ms is not None},
            "fast_read": fast.as_json(),
        }


def run_instructions_section(report: Report) -> None:
    title = "instructions: own code per sync scope (callgrind; in-memory SQLite, monitoring on)"
    with report.section("instructions", title):
        counted = run_instructions(1000 if report.args.quick else 3000)
        if counted is None:
            report.show("", "  skipped: valgrind is not installed")
            return
        report.show("", counted.report())
        report.results["instructions"] = counted.as_json()


def run_profile_section(report: Report) -> None:
    title = "profile: sync session_scope around SELECT 1, monitoring on (cProfile)"
    with report.section("profile", title):
        profiled = run_profile(min(report.args.memory_scopes, 50_000))
        report.show("", profiled.report())
        report.results["profile"] = profiled.as_json()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    env = environment()
    print_environment(env, args)
    with LogTally().installed() as log, contextlib.ExitStack() as stack:
        report = Report(args, env, random.Random(args.seed), log)
        needs_postgres = "postgres" in args.backends and {
            "e2e",
            "gap",
            "concurrency",
            "testing",
            "latency",
        } & set(args.sections)
        server = stack.enter_context(postgres_server(env)) if needs_postgres else None
        databases: list[Database] = []
        if "sqlite" in args.backends and {"e2e", "testing"} & set(args.sections):
            directory = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-")))
            databases.append(Database.sqlite(directory, args.sqlite_durable))
        postgres = Database.postgres(server) if server is not None else None
        if postgres is not None:
            databases.append(postgres)
        for database in databases:
            database.create_table()

        if "e2e" in args.sections:
            run_e2e(report, databases)
        if "overhead" in args.sections:
            run_overhead_section(report)
        if "gap" in args.sections:
            run_gap_section(report, postgres)
        if "concurrency" in args.sections:
            run_concurrency_section(report, postgres)
        if "testing" in args.sections:
            run_testing_section(report, databases)
        if "latency" in args.sections and postgres is not None:
            run_latency_section(report, server, postgres)
        stack.close()  # PostgreSQL is no longer needed
        if "memory" in args.sections:
            run_memory_section(report)
        if "instructions" in args.sections:
            run_instructions_section(report)
        if "profile" in args.sections:
            run_profile_section(report)

    budgets = evaluate_budgets(report)
    print("\n== budgets (docs/architecture.md) " + "=" * 46)
    print(format_table(["budget", "limit", "measured", "verdict"], [b.row() for b in budgets]))
    if args.quick:
        print("  (--quick: a smoke run; too few rounds for these verdicts to mean anything)")
    if report.e2e:
        stamp = datetime.datetime.now(datetime.UTC).strftime("%F")
        title = (
            f"sessionscope {env['sessionscope']} ({env['git'] or '?'}), {stamp}: Python "
            f"{env['python'].split()[0]}, SQLAlchemy {env['sqlalchemy']}, "
            f"PostgreSQL {(env['postgresql'] or '-').split(' ')[0]}"
            + (" (--quick)" if args.quick else "")
        )
        print(write_chart(report.e2e, args.chart, title, E2E_RATIO))
    total = time.perf_counter() - started
    print(
        f"\nfinished in {total:.0f} s ("
        + ", ".join(f"{name} {seconds:.0f} s" for name, seconds in report.seconds.items())
        + ")"
    )
    if args.json is not None:
        document = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "environment": env,
            "options": {
                key: str(value) if isinstance(value, Path) else value
                for key, value in vars(args).items()
            },
            "results": report.results,
            "budgets": [budget.as_json() for budget in budgets],
            "seconds": {"total": total, **report.seconds},
        }
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
        print(f"results written to {args.json}")
    return 0


def evaluate_budgets(report: Report) -> list[Budget]:
    budgets: list[Budget] = []
    sync_overhead = next((r for r in report.overhead if r.flavour == "sync"), None)
    budgets.append(
        Budget.at_most(
            "own code per sync scope, (a), monitoring on",
            OWN_CODE_US,
            None
            if sync_overhead is None
            else sync_overhead.added("scope_monitoring_on", "raw_hooked_engine"),
            "µs",
        )
    )
    groups = {group.name: group for group in report.e2e}
    latency = f"@{report.args.rtt:g}ms"
    for name, limit in [
        *E2E_RATIO.items(),
        *(
            (f"{flavour}/postgres{latency}", E2E_RATIO[f"{flavour}/postgres"])
            for flavour in FLAVOURS
        ),
    ]:
        group = groups.get(name)
        budgets.append(
            Budget.at_most(
                f"e2e {name}: session_scope (on) / raw SQLAlchemy",
                limit,
                None if group is None else group.ratio("scope_monitoring_on"),
                "x",
                None if group is None else group.noise("scope_monitoring_on"),
            )
        )
    for name, group in groups.items():
        for peer in PEERS:
            if peer in group.series:
                budgets.append(
                    Budget.at_most(
                        f"e2e {name}: session_scope (on) / {PEERS[peer][0]}",
                        1.0,
                        group.ratio_to("scope_monitoring_on", peer),
                        "x",
                        group.noise("scope_monitoring_on", peer),
                    )
                )
    fast = report.fast_read
    for flavour in FLAVOURS:
        budgets.append(
            Budget.at_least(
                f"read-only fast path at {report.args.rtt:g} ms RTT, {flavour}: raw begin() / it",
                FAST_PATH_SPEED_UP,
                None if fast is None else fast.speed_up(flavour),
                "x",
            )
        )
    for cost in report.testing:
        budgets.append(
            Budget.at_least(
                f"testing {cost.backend}: emptying the tables / isolated()",
                1.0,
                cost.ratio("truncate"),
                "x",
            )
        )
    for flavour in ("async", "sync"):
        result = next((r for r in report.concurrency if r.flavour == flavour), None)
        budgets.append(
            Budget.at_least(
                f"concurrency {flavour}: session_scope (on) / raw SQLAlchemy",
                CONCURRENCY_RATIO,
                None if result is None else result.ratio,
                "x",
            )
        )
    budgets.append(
        Budget.at_most(
            "concurrency: errors",
            0,
            None
            if not report.concurrency
            else float(sum(r.error_count for r in report.concurrency)),
            "errors",
        )
    )
    return budgets


if __name__ == "__main__":
    sys.exit(main())
