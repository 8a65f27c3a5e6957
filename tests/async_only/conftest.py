"""Async-only behaviour (task cancellation, timeouts) reuses the async flavour's fixtures."""

from tests._async.conftest import backend, config, database, manager

__all__ = ["backend", "config", "database", "manager"]
