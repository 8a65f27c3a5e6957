"""Prometheus exporter: ``register(*managers)`` publishes the managers' monitors.

The collector reads ``monitor.snapshot()`` and ``monitor.histograms()`` when
Prometheus scrapes, so it adds nothing to the transaction path. Every metric
has a ``manager`` label (the manager's URL, without password)::

    from sessionscope.exporters import prometheus
    prometheus.register(manager, async_manager)  # into prometheus_client.REGISTRY

A manager with ``enable_monitoring=False`` exports its pool gauges only: its
counters would all read 0, which would look like an idle database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

from . import BUCKETS, Monitored, check_managers

try:
    from prometheus_client import REGISTRY, CollectorRegistry
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import Collector
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "sessionscope.exporters.prometheus needs prometheus-client: "
        'pip install "sessionscope[prometheus]"'
    ) from exc

__all__ = ["BUCKETS", "SessionScopeCollector", "register", "unregister"]

# Upper bounds, in seconds, of the exported histogram buckets (+Inf is added).

Snapshot = Mapping[str, Any]

# Counters without a label of their own: (name without _total, help, figure).
_TOTALS: tuple[tuple[str, str, Callable[[Snapshot], int]], ...] = (
    ("sessionscope_sessions_opened", "Sessions opened.", lambda s: s["sessions"]["opened"]),
    ("sessionscope_sessions_closed", "Sessions closed.", lambda s: s["sessions"]["closed"]),
    (
        "sessionscope_slow_transactions",
        "Transactions slower than slow_transaction_seconds.",
        lambda s: s["transactions"]["slow"],
    ),
    (
        "sessionscope_commit_outcome_unknown",
        "COMMITs whose outcome is unknown (connection lost while COMMIT was in flight).",
        lambda s: s["commit_outcome_unknown"],
    ),
)

# Counters broken down by one label: (name without _total, help, label, figures by value).
_BREAKDOWNS: tuple[tuple[str, str, str, Callable[[Snapshot], Mapping[str, int]]], ...] = (
    (
        "sessionscope_transactions",
        "Transactions ended, by outcome.",
        "outcome",
        lambda s: {k: s["transactions"][k] for k in ("committed", "rolled_back")},
    ),
    (
        "sessionscope_rollbacks",
        "Transactions rolled back, by cause.",
        "cause",
        lambda s: s["transactions"]["rolled_back_by_cause"],
    ),
    ("sessionscope_savepoints", "Savepoints, by event.", "event", lambda s: s["savepoints"]),
    ("sessionscope_retries", "Retries, by reason.", "reason", lambda s: s["retries"]["by_reason"]),
    (
        "sessionscope_errors",
        "Errors that ended transactions, by type.",
        "type",
        lambda s: s["errors"],
    ),
)

# Histograms: (name, help, key of monitor.histograms()).
_HISTOGRAMS = (
    (
        "sessionscope_transaction_duration_seconds",
        "Transaction durations, from the session's opening to its commit or rollback.",
        "transaction_duration",
    ),
    (
        "sessionscope_connection_wait_seconds",
        "Waits for a connection from the pool.",
        "connection_wait",
    ),
)

# Gauges of the pool: (name, help, key of snapshot()["pool"]).
_POOL = (
    ("sessionscope_pool_size", "Connections the pool keeps open.", "size"),
    ("sessionscope_pool_checked_in", "Idle connections in the pool.", "checked_in"),
    ("sessionscope_pool_checked_out", "Connections in use.", "checked_out"),
    ("sessionscope_pool_overflow", "Connections open beyond the pool size.", "overflow"),
)


class SessionScopeCollector(Collector):
    """Exports the monitors of some managers; one collector per registry holds them all."""

    def __init__(self, *managers: Monitored) -> None:
        self._lock = threading.Lock()
        self.managers: tuple[Monitored, ...] = check_managers(managers)

    def add(self, *managers: Monitored) -> None:
        """Export these managers too (one collector per registry: names must not repeat)."""
        with self._lock:
            self.managers = check_managers((*self.managers, *managers))

    def remove(self, *managers: Monitored) -> None:
        with self._lock:
            self.managers = tuple(m for m in self.managers if m not in managers)

    def describe(self) -> Iterator[Metric]:
        # The names, without samples: the registry learns them without a scrape and
        # refuses a second collector of the same names (a scrape would repeat them).
        return _families(())

    def collect(self) -> Iterator[Metric]:
        return _families(self.managers)


def _families(managers: tuple[Monitored, ...]) -> Iterator[Metric]:
    snapshots = [(m.monitor, m.monitor.snapshot()) for m in managers]
    monitored = [(monitor, s) for monitor, s in snapshots if monitor.enabled]

    for name, help_text, figure in _TOTALS:
        counter = CounterMetricFamily(name, help_text, labels=["manager"])
        for monitor, s in monitored:
            counter.add_metric([monitor.name], figure(s))
        yield counter
    for name, help_text, label, figures in _BREAKDOWNS:
        counter = CounterMetricFamily(name, help_text, labels=["manager", label])
        for monitor, s in monitored:
            for value, n in sorted(figures(s).items()):
                counter.add_metric([monitor.name, value], n)
        yield counter

    # Counters and histograms come from two reads of the monitor, so under load a
    # histogram's _count may run a transaction or two ahead of transactions_total.
    histograms_of = [(monitor, monitor.histograms()) for monitor, _ in monitored]
    for name, help_text, key in _HISTOGRAMS:
        family = HistogramMetricFamily(name, help_text, labels=["manager"])
        for monitor, histograms in histograms_of:
            histogram = histograms[key]
            # The monitor's own buckets grow by 4%, so a sample within 4% of a
            # bound may be counted in the next bucket up.
            # repr() spells the bounds as prometheus_client does: le="0.001", le="1.0".
            buckets = [(repr(b), histogram.count_at_most(b)) for b in BUCKETS]
            buckets.append(("+Inf", histogram.count))
            family.add_metric([monitor.name], buckets, histogram.total)
        yield family

    active = GaugeMetricFamily("sessionscope_sessions_active", "Sessions open.", labels=["manager"])
    for monitor, s in monitored:
        active.add_metric([monitor.name], s["sessions"]["active"])
    yield active
    yield from _engine_families(snapshots)
    # Pool figures are read live from the pool, monitoring or not.
    for name, help_text, key in _POOL:
        gauge = GaugeMetricFamily(name, help_text, labels=["manager"])
        for monitor, s in snapshots:
            if s["pool"][key] is not None:  # e.g. a NullPool has no size
                gauge.add_metric([monitor.name], s["pool"][key])
        yield gauge


def _engine_families(snapshots: Sequence[tuple[Any, Snapshot]]) -> Iterator[Metric]:
    """Per engine of the managers with replicas: scopes routed, fallbacks, refusals, lag."""
    labels = ["manager", "engine", "role"]
    routed = CounterMetricFamily(
        "sessionscope_engine_scopes", "Scopes that ran on each engine.", labels=labels
    )
    fallbacks = CounterMetricFamily(
        "sessionscope_replica_fallbacks",
        "Read-only scopes the primary took: no replica was fit.",
        labels=["manager"],
    )
    refused = CounterMetricFamily(
        "sessionscope_replica_refused",
        "Connections a replica refused or lost.",
        labels=["manager", "engine"],
    )
    lag = GaugeMetricFamily(
        "sessionscope_replica_lag_seconds",
        "Replay lag of each replica, when last measured.",
        labels=["manager", "engine"],
    )
    healthy = GaugeMetricFamily(
        "sessionscope_replica_healthy",
        "1 if the replica may take read-only scopes now, else 0.",
        labels=["manager", "engine"],
    )
    for monitor, s in snapshots:
        for engine in s["engines"]:
            if engine["routed"] is not None:
                routed.add_metric([monitor.name, engine["name"], engine["role"]], engine["routed"])
            if engine["role"] == "primary":
                fallbacks.add_metric([monitor.name], engine["fallbacks"])
                continue
            refused.add_metric([monitor.name, engine["name"]], engine["refused"])
            if engine["lag"] is not None:
                lag.add_metric([monitor.name, engine["name"]], engine["lag"])
            healthy.add_metric([monitor.name, engine["name"]], int(engine["healthy"]))
    yield from (routed, fallbacks, refused, lag, healthy)


def register(*managers: Monitored, registry: CollectorRegistry = REGISTRY) -> SessionScopeCollector:
    """Export the managers' metrics on ``registry``; returns the collector (see ``add``)."""
    collector = SessionScopeCollector(*managers)
    registry.register(collector)
    return collector


def unregister(collector: SessionScopeCollector, registry: CollectorRegistry = REGISTRY) -> None:
    """Stop exporting: remove the collector ``register`` returned from ``registry``."""
    registry.unregister(collector)
