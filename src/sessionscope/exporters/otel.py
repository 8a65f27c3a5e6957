"""OpenTelemetry exporter: ``instrument(*managers)`` records the managers' metrics.

Histograms and counters are fed by the monitors' events, through one listener
per manager: OTel histograms need every measurement, and counting from the
same events keeps each counter in step with its histogram (a transaction's
count and duration arrive together). They count from ``instrument()`` on and
stop at ``uninstrument()``. Pool figures and open sessions are read when the
metrics are collected. Pool metrics have the ``db.client.*`` names of the
OpenTelemetry semantic conventions::

    from sessionscope.exporters import otel
    handle = otel.instrument(manager, meter_provider=provider)  # or the global one
    handle.uninstrument()
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

from .. import __version__
from ..monitor import MonitorEvent
from . import BUCKETS, Monitored, check_managers

try:
    from opentelemetry import metrics
    from opentelemetry.metrics import CallbackOptions, Histogram, Meter, MeterProvider, Observation
    from opentelemetry.trace import Tracer, TracerProvider

    from ._tracing import TransactionTracer
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        'sessionscope.exporters.otel needs opentelemetry-api: pip install "sessionscope[otel]"'
    ) from exc

__all__ = ["BUCKETS", "Instrumentation", "instrument"]

# Spelled as in opentelemetry-semantic-conventions 0.66b2 (db ones are incubating there);
# that package is no dependency of opentelemetry-api, so they are not imported from it.
POOL_NAME = "db.client.connection.pool.name"
STATE = "db.client.connection.state"
ERROR_TYPE = "error.type"
# Ours, on the sessionscope.* metrics: the manager's name (the same as the pool name).
MANAGER = "sessionscope.manager"
OUTCOME = "sessionscope.outcome"
CAUSE = "sessionscope.rollback.cause"
SAVEPOINT_EVENT = "sessionscope.savepoint.event"
REASON = "sessionscope.retry.reason"
ENGINE = "sessionscope.engine"  # an engine's URL, without password
ROLE = "sessionscope.engine.role"  # primary or replica

# Advised histogram bounds in seconds (the SDK's default ones suit milliseconds).


def _histogram(meter: Meter, name: str, description: str) -> Histogram:
    try:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=BUCKETS
        )
    except TypeError:  # an opentelemetry-api older than the advisory parameter
        return meter.create_histogram(name, unit="s", description=description)


class Instrumentation:
    """The handle ``instrument()`` returns; ``uninstrument()`` stops the recording."""

    def __init__(
        self,
        managers: tuple[Monitored, ...],
        meter: Meter,
        observer: _Observer,
        tracer: Tracer | None = None,
    ):
        self.managers = managers
        self._observer = observer
        # A span maker per manager (exporters/_tracing.py), when tracing.
        self._tracers = [TransactionTracer(manager, tracer) for manager in managers if tracer]
        for listener in self._tracers:
            listener.monitor.add_listener(listener)
        self._wait = _histogram(
            meter, "db.client.connection.wait_time", "Time to obtain a connection from the pool."
        )
        self._duration = _histogram(
            meter, "sessionscope.transaction.duration", "Duration of transactions."
        )
        count = meter.create_counter
        self._transactions = count("sessionscope.transactions", "{transaction}", "Transactions.")
        self._rollbacks = count("sessionscope.rollbacks", "{transaction}", "Rollbacks by cause.")
        self._slow = count(
            "sessionscope.slow_transactions", "{transaction}", "Over slow_transaction_seconds."
        )
        self._savepoints = count("sessionscope.savepoints", "{event}", "Savepoint events.")
        self._retries = count("sessionscope.retries", "{retry}", "Retries by reason.")
        self._unknown = count(
            "sessionscope.commit_outcome_unknown", "{commit}", "COMMITs of unknown outcome."
        )
        self._errors = count("sessionscope.errors", "{error}", "Errors ending transactions.")
        for manager in managers:
            manager.monitor.add_listener(self._record)

    def uninstrument(self) -> None:
        """Remove the listeners and stop observing the pools (a second call does nothing)."""
        with _lock:
            if self not in self._observer.live:
                return
            self._observer.live = tuple(i for i in self._observer.live if i is not self)
        for manager in self.managers:
            manager.monitor.remove_listener(self._record)
        for listener in self._tracers:
            listener.stop()  # once the spans open now have ended

    def _record(self, event: MonitorEvent) -> None:
        # Runs in every transaction's own thread or task: record and go.
        kind, name = event.kind, event.manager
        if kind == "connection_acquired":
            self._wait.record(event.duration or 0.0, {POOL_NAME: name})
        elif kind in ("committed", "rolled_back"):
            outcome = {MANAGER: name, OUTCOME: kind}
            self._duration.record(event.duration or 0.0, outcome)
            self._transactions.add(1, outcome)
            if kind == "rolled_back":
                self._rollbacks.add(1, {MANAGER: name, CAUSE: event.reason or "unknown"})
        elif kind.startswith("savepoint_"):
            self._savepoints.add(1, {MANAGER: name, SAVEPOINT_EVENT: kind[len("savepoint_") :]})
        elif kind == "retry":
            self._retries.add(1, {MANAGER: name, REASON: event.reason or "unknown"})
        elif kind == "commit_outcome_unknown":
            self._unknown.add(1, {MANAGER: name})
        elif kind == "slow_transaction":
            self._slow.add(1, {MANAGER: name})
        # The errors the monitor counts: those that rolled back or lost a commit.
        if event.error is not None and kind in ("rolled_back", "commit_outcome_unknown"):
            self._errors.add(1, {MANAGER: name, ERROR_TYPE: type(event.error).__qualname__})


class _Observer:
    """The observable instruments of one provider, created once for all instrumentations.

    The SDK keeps the callbacks of the first registration of an observable name on
    a meter, ignores later ones, and cannot remove any; so the callbacks observe
    whichever instrumentations of the provider are live now.
    """

    def __init__(self, meter: Meter) -> None:
        self.live: tuple[Instrumentation, ...] = ()
        gauge = meter.create_observable_up_down_counter
        gauge("db.client.connection.count", [self._count], "{connection}", "Connections by state.")
        gauge("db.client.connection.idle.max", [self._idle_max], "{connection}", "Pool size.")
        gauge("db.client.connection.max", [self._max], "{connection}", "Most open at once.")
        gauge("sessionscope.sessions.active", [self._active], "{session}", "Sessions open.")
        # Per engine of the managers with replicas (monitor.snapshot()["engines"]).
        counter = meter.create_observable_counter
        counter("sessionscope.engine.scopes", [self._routed], "{scope}", "Scopes per engine.")
        counter("sessionscope.replica.fallbacks", [self._fallbacks], "{scope}", "To the primary.")
        counter("sessionscope.replica.refused", [self._refused], "{connection}", "Refused or lost.")
        meter.create_observable_gauge(
            "sessionscope.replica.lag", [self._lag], "s", "Replay lag, when last measured."
        )

    def _monitored(self) -> Iterator[Monitored]:
        for instrumentation in self.live:
            yield from instrumentation.managers

    def _count(self, options: CallbackOptions) -> Iterable[Observation]:
        for manager in self._monitored():
            pool = manager.monitor.pool_status()
            for state, key in (("idle", "checked_in"), ("used", "checked_out")):
                figure = pool[key]
                if figure is not None:
                    yield Observation(figure, {POOL_NAME: manager.monitor.name, STATE: state})

    def _idle_max(self, options: CallbackOptions) -> Iterable[Observation]:
        for manager in self._monitored():
            size = manager.monitor.pool_status()["size"]
            if size is not None:  # QueuePool: it keeps at most `size` idle connections
                yield Observation(size, {POOL_NAME: manager.monitor.name})

    def _max(self, options: CallbackOptions) -> Iterable[Observation]:
        for manager in self._monitored():
            # SQLAlchemy has no public accessor for max_overflow; -1 means no limit.
            pool: Any = getattr(getattr(manager, "engine", None), "pool", None)
            size, overflow = getattr(pool, "size", None), getattr(pool, "_max_overflow", None)
            if callable(size) and isinstance(overflow, int) and overflow >= 0:
                yield Observation(size() + overflow, {POOL_NAME: manager.monitor.name})

    def _active(self, options: CallbackOptions) -> Iterable[Observation]:
        for manager in self._monitored():
            if manager.monitor.enabled:  # a disabled monitor would say 0 whatever is open
                active = manager.monitor.snapshot()["sessions"]["active"]
                yield Observation(active, {MANAGER: manager.monitor.name})

    def _engines(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for manager in self._monitored():
            if manager.monitor.engines is not None:
                for engine in manager.monitor.snapshot()["engines"]:
                    yield manager.monitor.name, engine

    def _routed(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, engine in self._engines():
            if engine["routed"] is not None:
                attributes = {MANAGER: name, ENGINE: engine["name"], ROLE: engine["role"]}
                yield Observation(engine["routed"], attributes)

    def _fallbacks(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, engine in self._engines():
            if engine["role"] == "primary":
                yield Observation(engine["fallbacks"], {MANAGER: name})

    def _refused(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, engine in self._engines():
            if engine["role"] == "replica":
                yield Observation(engine["refused"], {MANAGER: name, ENGINE: engine["name"]})

    def _lag(self, options: CallbackOptions) -> Iterable[Observation]:
        for name, engine in self._engines():
            if engine["role"] == "replica" and engine["lag"] is not None:
                yield Observation(engine["lag"], {MANAGER: name, ENGINE: engine["name"]})


_lock = threading.Lock()
_observers: weakref.WeakKeyDictionary[MeterProvider, _Observer] = weakref.WeakKeyDictionary()


def instrument(
    *managers: Monitored,
    meter_provider: MeterProvider | None = None,
    tracer_provider: TracerProvider | None = None,
) -> Instrumentation:
    """Record the managers' metrics on the "sessionscope" Meter of ``meter_provider``,
    and, given a ``tracer_provider``, their transactions and decorated calls as spans
    of its "sessionscope" Tracer (see ``exporters/_tracing.py``).

    Without a provider, the global one is used: set it first, as its proxy hands the
    observable instruments to the real provider only once. A manager may be
    instrumented once per provider at a time (its events would be counted twice).
    Spans and metrics come from the monitor's events: a manager with
    ``enable_monitoring=False`` has neither.
    """
    provider = meter_provider if meter_provider is not None else metrics.get_meter_provider()
    meter = provider.get_meter("sessionscope", __version__)
    tracer = (
        None if tracer_provider is None else tracer_provider.get_tracer("sessionscope", __version__)
    )
    with _lock:
        observer = _observers.get(provider)
        if observer is None:
            observer = _observers[provider] = _Observer(meter)
        live = tuple(m for i in observer.live for m in i.managers)
        check_managers((*live, *managers))
        if tracer is not None:
            for manager in managers:
                listeners = manager.monitor._listeners
                if any(isinstance(listener, TransactionTracer) for listener in listeners):
                    raise ValueError(
                        f"{manager.monitor.name} is traced already: its transactions would "
                        "have two spans each; uninstrument() the other instrumentation first"
                    )
        instrumentation = Instrumentation(check_managers(managers), meter, observer, tracer)
        observer.live = (*observer.live, instrumentation)
    return instrumentation
