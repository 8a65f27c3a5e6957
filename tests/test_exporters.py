"""The Prometheus and OpenTelemetry exporters, against the real libraries and SQLite files.

Each test runs the same workloads on a sync and an async manager and reads the
figures back the way a real consumer would: Prometheus through its text
exposition, OpenTelemetry through an SDK reader.
"""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text
from sqlalchemy.orm import Session

import sessionscope
from sessionscope import AsyncSessionManager, SessionConfig, SessionManager
from sessionscope.exporters import otel, prometheus
from tests.pg_server import PostgresServer, _free_port

SELECT_1 = text("SELECT 1")

Manager = SessionManager | AsyncSessionManager


class Boom(Exception):
    pass


class Flaky(Exception):
    pass


@pytest.fixture
def sync_manager(tmp_path: Path) -> Iterator[SessionManager]:
    manager = SessionManager("sqlite:///" + str(tmp_path / "sync.db"))
    yield manager
    manager.dispose()


@pytest.fixture
async def async_manager(tmp_path: Path) -> AsyncIterator[AsyncSessionManager]:
    manager = AsyncSessionManager("sqlite+aiosqlite:///" + str(tmp_path / "async.db"))
    yield manager
    await manager.dispose()


@pytest.fixture
def disabled_manager(tmp_path: Path) -> Iterator[SessionManager]:
    config = SessionConfig(enable_monitoring=False)
    manager = SessionManager("sqlite:///" + str(tmp_path / "off.db"), config=config)
    yield manager
    manager.dispose()


@pytest.fixture
def sdk() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    yield provider, reader
    provider.shutdown()


@pytest.fixture(autouse=True)
def _no_failing_listener(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The monitor logs a listener that raises and goes on: that must not happen here."""
    yield
    failures = [r for r in caplog.records if "monitor listener" in r.getMessage()]
    assert not failures, failures[0].getMessage()


def run_sync_workload(manager: SessionManager) -> None:
    """3 commits, 2 rollbacks (both by exception: Boom, Flaky), 2 savepoints, 1 retry."""
    with manager.session_scope() as session:
        session.execute(SELECT_1)
        with manager.session_scope(propagation="nested") as nested:  # released
            nested.execute(SELECT_1)
    with manager.session_scope() as session:
        with pytest.raises(Boom):
            with manager.session_scope(propagation="nested") as nested:  # rolled back
                nested.execute(SELECT_1)
                raise Boom
    with pytest.raises(Boom):
        with manager.session_scope() as session:
            session.execute(SELECT_1)
            raise Boom
    attempts = []

    @manager.with_session(retry_on=lambda e: isinstance(e, Flaky), retry_delay=0)
    def flaky(session: Session) -> None:
        session.execute(SELECT_1)
        attempts.append(1)
        if len(attempts) == 1:
            raise Flaky

    flaky()


async def run_async_workload(manager: AsyncSessionManager) -> None:
    """1 commit, 1 rollback (not committed)."""
    async with manager.session_scope() as session:
        await session.execute(SELECT_1)
    async with manager.session_scope(auto_commit=False) as session:
        await session.execute(SELECT_1)


# -- Prometheus ---------------------------------------------------------------------------


def scrape(registry: CollectorRegistry) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of the text exposition, by name and labels."""
    exposition = generate_latest(registry).decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def sample(samples: dict[Any, float], name: str, manager: Manager, **labels: str) -> float | None:
    return samples.get((name, frozenset({"manager": manager.name, **labels}.items())))


def series_of(samples: dict[Any, float], manager: Manager) -> set[str]:
    return {name for name, labels in samples if ("manager", manager.name) in labels}


async def test_prometheus_exports_both_flavours(
    sync_manager: SessionManager, async_manager: AsyncSessionManager
) -> None:
    registry = CollectorRegistry()
    prometheus.register(sync_manager, async_manager, registry=registry)
    run_sync_workload(sync_manager)
    await run_async_workload(async_manager)
    samples = scrape(registry)

    def total(name: str, manager: Manager, **labels: str) -> float | None:
        return sample(samples, f"sessionscope_{name}_total", manager, **labels)

    s, a = sync_manager, async_manager
    assert total("sessions_opened", s) == total("sessions_closed", s) == 5
    assert total("transactions", s, outcome="committed") == 3
    assert total("transactions", s, outcome="rolled_back") == 2
    assert total("rollbacks", s, cause="exception") == 2
    assert total("rollbacks", s, cause="not_committed") == 0
    assert total("savepoints", s, event="opened") == 2
    assert total("savepoints", s, event="released") == 1
    assert total("savepoints", s, event="rolled_back") == 1
    assert total("retries", s, reason="retry_on") == 1
    assert total("errors", s, type="Boom") == total("errors", s, type="Flaky") == 1
    assert total("commit_outcome_unknown", s) == total("slow_transactions", s) == 0
    assert total("transactions", a, outcome="committed") == 1
    assert total("rollbacks", a, cause="not_committed") == 1
    assert total("savepoints", a, event="opened") == 0
    assert sample(samples, "sessionscope_errors_total", a, type="Boom") is None

    for manager, transactions in ((s, 5), (a, 2)):
        for histogram in ("transaction_duration", "connection_wait"):
            name = f"sessionscope_{histogram}_seconds"
            assert sample(samples, name + "_count", manager) == transactions
            assert sample(samples, name + "_bucket", manager, le="+Inf") == transactions
            assert sample(samples, name + "_bucket", manager, le="10.0") == transactions
            buckets = [sample(samples, name + "_bucket", manager, le=repr(b)) for b in (0.001, 1.0)]
            assert buckets[0] is not None and buckets[1] is not None
            assert buckets[0] <= buckets[1] <= transactions
            total_seconds = manager.monitor.histograms()[histogram].total
            assert sample(samples, name + "_sum", manager) == pytest.approx(total_seconds)
        pool = manager.monitor.snapshot()["pool"]
        assert sample(samples, "sessionscope_pool_size", manager) == pool["size"] == 5
        assert sample(samples, "sessionscope_pool_checked_out", manager) == 0
        assert sample(samples, "sessionscope_pool_checked_in", manager) == pool["checked_in"]
        assert sample(samples, "sessionscope_pool_overflow", manager) == 0
        assert sample(samples, "sessionscope_sessions_active", manager) == 0

    with sync_manager.session_scope() as session:  # pool and sessions read live
        session.execute(SELECT_1)
        samples = scrape(registry)
        assert sample(samples, "sessionscope_pool_checked_out", s) == 1
        assert sample(samples, "sessionscope_sessions_active", s) == 1


def test_prometheus_registration(sync_manager: SessionManager) -> None:
    registry = CollectorRegistry()
    collector = prometheus.register(registry=registry)
    assert not series_of(scrape(registry), sync_manager)
    collector.add(sync_manager)
    assert "sessionscope_pool_size" in series_of(scrape(registry), sync_manager)
    # A second collector would repeat every family in one scrape.
    with pytest.raises(ValueError, match="Duplicated"):
        prometheus.register(sync_manager, registry=registry)
    twin = SessionManager(sync_manager.name)
    try:
        with pytest.raises(ValueError, match="two managers named"):
            collector.add(twin)
    finally:
        twin.dispose()
    with pytest.raises(TypeError, match="SessionManager"):
        prometheus.register(object(), registry=CollectorRegistry())  # type: ignore[arg-type]
    collector.remove(sync_manager)
    assert not series_of(scrape(registry), sync_manager)
    prometheus.unregister(collector, registry=registry)
    assert not scrape(registry)


def test_prometheus_with_monitoring_off(disabled_manager: SessionManager) -> None:
    registry = CollectorRegistry()
    prometheus.register(disabled_manager, registry=registry)
    with disabled_manager.session_scope() as session:
        session.execute(SELECT_1)
    samples = scrape(registry)
    # No counter claims 0 transactions; the pool, read live, is still there.
    assert series_of(samples, disabled_manager) == {
        "sessionscope_pool_size",
        "sessionscope_pool_checked_in",
        "sessionscope_pool_checked_out",
        "sessionscope_pool_overflow",
    }
    assert sample(samples, "sessionscope_pool_checked_in", disabled_manager) == 1


# -- OpenTelemetry ------------------------------------------------------------------------


def collect(reader: InMemoryMetricReader) -> dict[str, Any]:
    """The metrics of the "sessionscope" meter, by name."""
    data = reader.get_metrics_data()
    if data is None:
        return {}
    return {
        metric.name: metric
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        if scope.scope.name == "sessionscope"
        for metric in scope.metrics
    }


def point(metrics: dict[str, Any], name: str, attributes: dict[str, str]) -> Any:
    """The data point of ``name`` with exactly these attributes (None if there is none)."""
    metric = metrics.get(name)
    points = metric.data.data_points if metric is not None else []
    return next((p for p in points if dict(p.attributes) == attributes), None)


def value(metrics: dict[str, Any], name: str, attributes: dict[str, str]) -> Any:
    found = point(metrics, name, attributes)
    return None if found is None else found.value


def of(manager: Manager, **attributes: str) -> dict[str, str]:
    """Attributes of a sessionscope.* point: the manager and ``sessionscope.<key>``s."""
    extra = {
        ("error.type" if k == "error_type" else "sessionscope." + k.replace("_", ".")): v
        for k, v in attributes.items()
    }
    return {"sessionscope.manager": manager.name, **extra}


def pool_of(manager: Manager, **attributes: str) -> dict[str, str]:
    extra = {"db.client.connection." + k: v for k, v in attributes.items()}
    return {"db.client.connection.pool.name": manager.name, **extra}


async def test_otel_records_both_flavours(
    sdk: tuple[MeterProvider, InMemoryMetricReader],
    sync_manager: SessionManager,
    async_manager: AsyncSessionManager,
) -> None:
    provider, reader = sdk
    handle = otel.instrument(sync_manager, async_manager, meter_provider=provider)
    run_sync_workload(sync_manager)
    await run_async_workload(async_manager)
    metrics = collect(reader)
    s, a = sync_manager, async_manager

    assert value(metrics, "sessionscope.transactions", of(s, outcome="committed")) == 3
    assert value(metrics, "sessionscope.transactions", of(s, outcome="rolled_back")) == 2
    assert value(metrics, "sessionscope.rollbacks", of(s, rollback_cause="exception")) == 2
    for event, n in (("opened", 2), ("released", 1), ("rolled_back", 1)):
        assert value(metrics, "sessionscope.savepoints", of(s, savepoint_event=event)) == n
    assert value(metrics, "sessionscope.retries", of(s, retry_reason="retry_on")) == 1
    assert value(metrics, "sessionscope.errors", of(s, error_type="Boom")) == 1
    assert value(metrics, "sessionscope.errors", of(s, error_type="Flaky")) == 1
    assert value(metrics, "sessionscope.transactions", of(a, outcome="committed")) == 1
    assert value(metrics, "sessionscope.rollbacks", of(a, rollback_cause="not_committed")) == 1
    assert "sessionscope.commit_outcome_unknown" not in metrics  # nothing happened yet

    durations = metrics["sessionscope.transaction.duration"]
    assert durations.unit == "s"
    for manager, outcome, n in ((s, "committed", 3), (s, "rolled_back", 2), (a, "committed", 1)):
        histogram = point(
            metrics, "sessionscope.transaction.duration", of(manager, outcome=outcome)
        )
        assert histogram.count == n and histogram.sum > 0
        assert tuple(histogram.explicit_bounds) == otel.BUCKETS
    assert metrics["db.client.connection.wait_time"].unit == "s"
    for manager, sessions in ((s, 5), (a, 2)):
        wait = point(metrics, "db.client.connection.wait_time", pool_of(manager))
        assert wait.count == sessions
        assert wait.sum == pytest.approx(manager.monitor.histograms()["connection_wait"].total)
        pool = manager.monitor.pool_status()
        assert value(metrics, "db.client.connection.count", pool_of(manager, state="used")) == 0
        idle = value(metrics, "db.client.connection.count", pool_of(manager, state="idle"))
        assert idle == pool["checked_in"]
        assert value(metrics, "db.client.connection.idle.max", pool_of(manager)) == 5
        assert value(metrics, "db.client.connection.max", pool_of(manager)) == 5 + 10
        assert value(metrics, "sessionscope.sessions.active", of(manager)) == 0

    with sync_manager.session_scope() as session:  # pool and sessions are read live
        session.execute(SELECT_1)
        metrics = collect(reader)
        assert value(metrics, "db.client.connection.count", pool_of(s, state="used")) == 1
        assert value(metrics, "sessionscope.sessions.active", of(s)) == 1
    handle.uninstrument()


async def test_otel_uninstrument_stops_recording(
    sdk: tuple[MeterProvider, InMemoryMetricReader],
    sync_manager: SessionManager,
    async_manager: AsyncSessionManager,
) -> None:
    provider, reader = sdk
    committed = of(sync_manager, outcome="committed")
    handle = otel.instrument(sync_manager, async_manager, meter_provider=provider)
    with pytest.raises(ValueError, match="two managers named"):  # its events would count twice
        otel.instrument(sync_manager, meter_provider=provider)
    with sync_manager.session_scope():
        pass
    handle.uninstrument()
    handle.uninstrument()  # a second call does nothing
    # The listeners are gone: the monitor refuses to remove them again.
    for manager in (sync_manager, async_manager):
        with pytest.raises(ValueError, match="not a listener"):
            manager.monitor.remove_listener(handle._record)
    with sync_manager.session_scope():
        pass
    async with async_manager.session_scope():
        pass
    metrics = collect(reader)
    assert value(metrics, "sessionscope.transactions", committed) == 1
    assert point(metrics, "db.client.connection.count", pool_of(sync_manager, state="idle")) is None

    # Instrumenting again on the same provider observes the pools again.
    handle = otel.instrument(sync_manager, meter_provider=provider)
    with sync_manager.session_scope():
        pass
    metrics = collect(reader)
    assert value(metrics, "sessionscope.transactions", committed) == 2
    assert value(metrics, "db.client.connection.idle.max", pool_of(sync_manager)) == 5
    assert point(metrics, "db.client.connection.idle.max", pool_of(async_manager)) is None
    handle.uninstrument()


def test_otel_with_monitoring_off(
    sdk: tuple[MeterProvider, InMemoryMetricReader], disabled_manager: SessionManager
) -> None:
    provider, reader = sdk
    handle = otel.instrument(disabled_manager, meter_provider=provider)
    with disabled_manager.session_scope() as session:
        session.execute(SELECT_1)
    metrics = collect(reader)
    # No events, so no sessionscope.* figures; the pool, read live, is still there.
    assert sorted(metrics) == [
        "db.client.connection.count",
        "db.client.connection.idle.max",
        "db.client.connection.max",
    ]
    idle = pool_of(disabled_manager, state="idle")
    assert value(metrics, "db.client.connection.count", idle) == 1
    handle.uninstrument()


# -- packaging ------------------------------------------------------------------------------


@pytest.mark.postgres
def test_both_exporters_show_each_engine_of_a_manager_with_replicas(
    pg_server: PostgresServer,
    pg_replica: PostgresServer,
    sdk: tuple[MeterProvider, InMemoryMetricReader],
) -> None:
    refusing = pg_replica.url("psycopg").replace(f":{pg_replica.port}/", f":{_free_port()}/")
    manager = SessionManager(
        pg_server.url("psycopg"),
        replicas=[pg_replica.url("psycopg"), refusing],
        config=SessionConfig(replica_cool_down=60, log_level="ERROR"),
    )
    registry = CollectorRegistry()
    prometheus.register(manager, registry=registry)
    provider, reader = sdk
    handle = otel.instrument(manager, meter_provider=provider)
    try:
        for _ in range(4):
            with manager.session_scope(read_only=True) as session:
                session.execute(SELECT_1)
        with manager.session_scope() as session:
            session.execute(SELECT_1)
        replica, dead = manager._replicas.replicas  # type: ignore[union-attr]
        samples = scrape(registry)
        scopes = "sessionscope_engine_scopes_total"
        assert sample(samples, scopes, manager, engine=manager.name, role="primary") == 1
        assert sample(samples, scopes, manager, engine=replica.name, role="replica") == 4
        assert sample(samples, scopes, manager, engine=dead.name, role="replica") == 0
        assert sample(samples, "sessionscope_replica_fallbacks_total", manager) == 0
        refused = "sessionscope_replica_refused_total"
        assert sample(samples, refused, manager, engine=dead.name) == 1
        assert sample(samples, "sessionscope_replica_healthy", manager, engine=dead.name) == 0
        assert sample(samples, "sessionscope_replica_healthy", manager, engine=replica.name) == 1
        lag = sample(samples, "sessionscope_replica_lag_seconds", manager, engine=replica.name)
        assert lag is not None and lag >= 0

        data = reader.get_metrics_data()
        points = {
            (metric.name, tuple(sorted(point.attributes.items()))): point.value
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            for metric in scope.metrics
            if metric.name.startswith(("sessionscope.engine", "sessionscope.replica"))
            for point in metric.data.data_points
        }
        on_replica = (
            ("sessionscope.engine", replica.name),
            ("sessionscope.engine.role", "replica"),
            ("sessionscope.manager", manager.name),
        )
        assert points[("sessionscope.engine.scopes", on_replica)] == 4
        dead_engine = (("sessionscope.engine", dead.name), ("sessionscope.manager", manager.name))
        assert points[("sessionscope.replica.refused", dead_engine)] == 1
        assert (
            points[("sessionscope.replica.fallbacks", (("sessionscope.manager", manager.name),))]
            == 0
        )
    finally:
        handle.uninstrument()
        manager.dispose()


def test_importing_sessionscope_imports_no_exporter_library() -> None:
    code = (
        "import sys, sessionscope, sessionscope.exporters\n"
        "names = ('prometheus_client', 'opentelemetry')\n"
        "loaded = [m for m in sys.modules if m.startswith(names)]\n"
        "assert not loaded, loaded\n"
    )
    src = str(Path(sessionscope.__file__).parents[1])
    path = os.pathsep.join(filter(None, [src, os.environ.get("PYTHONPATH")]))
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": path})


@pytest.mark.parametrize(
    ("module", "library", "extra"),
    [("prometheus", "prometheus_client", "prometheus"), ("otel", "opentelemetry", "otel")],
)
def test_an_exporter_without_its_library_names_the_extra(
    monkeypatch: pytest.MonkeyPatch, module: str, library: str, extra: str
) -> None:
    name = "sessionscope.exporters." + module
    monkeypatch.delitem(sys.modules, name)  # restored after the test
    monkeypatch.setitem(sys.modules, library, None)  # None: "import library" fails
    with pytest.raises(ImportError, match=re.escape(f'pip install "sessionscope[{extra}]"')):
        importlib.import_module(name)
