"""Exporters of the figures of ``manager.monitor`` to metrics systems.

- :mod:`sessionscope.exporters.prometheus`: ``register(*managers)``, a collector read at
  scrape time (``pip install "sessionscope[prometheus]"``)
- :mod:`sessionscope.exporters.otel`: ``instrument(*managers)``, OpenTelemetry metrics
  (``pip install "sessionscope[otel]"``)

This package imports neither library; each exporter module imports its own.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol

from ..monitor import SessionMonitor

__all__ = ["BUCKETS", "Monitored", "check_managers"]

# The upper bounds (seconds) of the duration histograms both exporters publish.
BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Monitored(Protocol):
    """What an exporter needs of a manager (either flavour): its monitor."""

    @property
    def monitor(self) -> SessionMonitor: ...


def check_managers(managers: Iterable[Monitored]) -> tuple[Monitored, ...]:
    """The managers as a tuple, refusing non-managers and two managers with one name.

    The name is the label that tells the managers' series apart: two managers
    on the same URL would export clashing series (and a manager given twice
    would be counted twice).
    """
    checked = tuple(managers)
    names: set[str] = set()
    for manager in checked:
        monitor = getattr(manager, "monitor", None)
        if not isinstance(monitor, SessionMonitor):
            raise TypeError(f"expected a SessionManager or AsyncSessionManager, got {manager!r}")
        if monitor.name in names:
            raise ValueError(
                f"two managers named {monitor.name!r}: their metrics could not be told apart"
            )
        names.add(monitor.name)
    return checked
