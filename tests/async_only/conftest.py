"""Async-only behaviour (task cancellation, timeouts) reuses the async flavour's fixtures."""

from tests._async.conftest import backend, config, database, manager, pytest_generate_tests

__all__ = ["backend", "config", "database", "manager", "pytest_generate_tests"]
