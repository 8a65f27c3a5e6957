"""Section "testing": what isolating one test costs, against the usual alternatives.

A "test" here is small and typical: it writes three rows of a table through
``session_scope`` (committing) and reads them back. Around it, per variant:

- isolated    ``sessionscope.testing.isolated(manager)``: BEGIN, a SAVEPOINT per
              scope, ROLLBACK at the end; nothing to clean;
- truncate    the test commits for real, then the table it touched is emptied
              (``DELETE FROM`` on SQLite, ``TRUNCATE`` on PostgreSQL);
- recreate    the test commits for real, then the tables are dropped and created.

Interleaved rounds, µs per test (median), on the same engine.
"""

from __future__ import annotations

import dataclasses
import random
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Integer, String, func, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from sessionscope import SessionConfig, SessionManager
from sessionscope.testing import isolated

from .harness import Series, Variant, paired_ratio, run_interleaved
from .workload import Database

__all__ = ["IsolationCost", "run_isolation_cost"]


class _Base(DeclarativeBase):
    pass


class _Row(_Base):
    __tablename__ = "bench_test_rows"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


@dataclasses.dataclass
class IsolationCost:
    backend: str
    series: dict[str, Series]

    def report(self) -> str:
        base = self.series["isolated"]
        lines = [f"  {self.backend}: µs per test (median), and as a multiple of isolated"]
        for series in self.series.values():
            ratio = paired_ratio(series, base)
            lines.append(
                f"    {series.label:<44} {series.median:10.0f} µs   {ratio:6.2f}x"
                f"   spread {series.spread:.0%}"
            )
        return "\n".join(lines)

    def ratio(self, key: str) -> float:
        """A way of isolating tests over ``isolated()`` (paired)."""
        return paired_ratio(self.series[key], self.series["isolated"])

    def as_json(self) -> dict[str, Any]:
        return {key: series.as_json() for key, series in self.series.items()}


def run_isolation_cost(database: Database, *, rounds: int, tests: int) -> IsolationCost:
    manager = SessionManager(
        database.sync_url, config=SessionConfig(enable_monitoring=False, log_level="WARNING")
    )
    try:
        _Base.metadata.drop_all(manager.engine)
        _Base.metadata.create_all(manager.engine)
        empty = (
            "TRUNCATE bench_test_rows"
            if database.backend == "postgres"
            else "DELETE FROM bench_test_rows"
        )

        def one_test() -> None:
            with manager.session_scope() as session:
                session.add_all(_Row(name=f"row {n}") for n in range(3))
            with manager.session_scope() as session:
                count = session.scalar(select(func.count()).select_from(_Row))
                assert count == 3, count  # each variant starts from an empty table

        def isolated_tests(keys: Sequence[int]) -> None:
            for _ in keys:
                with isolated(manager):
                    one_test()

        def truncated_tests(keys: Sequence[int]) -> None:
            for _ in keys:
                one_test()
                with manager.engine.begin() as connection:
                    connection.execute(text(empty))

        def recreated_tests(keys: Sequence[int]) -> None:
            for _ in keys:
                one_test()
                _Base.metadata.drop_all(manager.engine)
                _Base.metadata.create_all(manager.engine)

        variants = [
            Variant("isolated", "isolated(manager)", isolated_tests),
            Variant("truncate", "commit, then empty the table", truncated_tests),
            Variant("recreate", "commit, then drop and create the tables", recreated_tests),
        ]
        keys = range(tests)
        series = run_interleaved(
            variants,
            rounds=rounds,
            keys_for_round=lambda: keys,
            warmup_keys=range(3),
            rng=random.Random(1),
        )
        return IsolationCost(database.backend, series)
    finally:
        _Base.metadata.drop_all(manager.engine)
        manager.dispose()
