"""SessionConfig and option validation: flavour-free, no database needed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from sessionscope import ConfigurationError, SessionConfig, is_transient
from sessionscope._options import resolve_retry_options, resolve_scope_options


def test_defaults_are_the_original_designs() -> None:
    config = SessionConfig()
    assert (
        config.auto_commit,
        config.auto_rollback,
        config.enable_monitoring,
        config.log_level,
        config.retry_attempts,
        config.retry_delay,
    ) == (True, True, True, "INFO", 3, 1.0)
    assert (config.retry_max_delay, config.retry_jitter, config.slow_transaction_seconds) == (
        30.0,
        True,
        1.0,
    )


def test_the_config_is_frozen() -> None:
    with pytest.raises(AttributeError):
        SessionConfig().auto_commit = False  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("auto_commit", "yes"),
        ("retry_attempts", -1),
        ("retry_attempts", 1.5),
        ("retry_attempts", True),
        ("retry_delay", -0.5),
        ("retry_delay", float("nan")),
        ("retry_max_delay", "30"),
        ("log_level", "LOUD"),
        ("slow_transaction_seconds", -1),
    ],
)
def test_invalid_values_name_the_field(field: str, value: Any) -> None:
    with pytest.raises(ConfigurationError, match=field):
        SessionConfig(**{field: value})


def test_log_level_is_case_insensitive() -> None:
    assert SessionConfig(log_level="debug").log_level == "DEBUG"


def test_replace_validates_and_names_unknown_fields() -> None:
    assert SessionConfig().replace(retry_attempts=0).retry_attempts == 0
    with pytest.raises(ConfigurationError, match="retry_atempts"):
        SessionConfig().replace(retry_atempts=0)


def test_from_env_reads_every_field() -> None:
    config = SessionConfig.from_env(
        environ={
            "SESSIONSCOPE_AUTO_COMMIT": "false",
            "SESSIONSCOPE_LOG_LEVEL": "warning",
            "SESSIONSCOPE_RETRY_ATTEMPTS": "5",
            "SESSIONSCOPE_RETRY_DELAY": "0.25",
            "SESSIONSCOPE_ENABLE_MONITORING": "off",
            "SESSIONSCOPE_URL": "ignored: other settings share the prefix",
        }
    )
    assert config == SessionConfig(
        auto_commit=False,
        log_level="WARNING",
        retry_attempts=5,
        retry_delay=0.25,
        enable_monitoring=False,
    )


def test_from_env_takes_a_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("APP_DB_RETRY_ATTEMPTS", "0")
    assert SessionConfig.from_env("APP_DB_").retry_attempts == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("SESSIONSCOPE_RETRY_ATTEMPTS", "three"),
        ("SESSIONSCOPE_RETRY_ATTEMPTS", "-2"),
        ("SESSIONSCOPE_AUTO_ROLLBACK", "maybe"),
        ("SESSIONSCOPE_RETRY_DELAY", "1s"),
        ("SESSIONSCOPE_LOG_LEVEL", "chatty"),
    ],
)
def test_from_env_names_bad_values(variable: str, value: str) -> None:
    field = variable.removeprefix("SESSIONSCOPE_").lower()
    with pytest.raises(ConfigurationError, match=f"(?i){field}"):
        SessionConfig.from_env(environ={variable: value})


def test_scope_options_override_the_config() -> None:
    config = SessionConfig(auto_commit=False)
    assert resolve_scope_options(config, {}).auto_commit is False
    assert resolve_scope_options(config, {"auto_commit": True}).auto_commit is True
    options = resolve_scope_options(config, {"isolation_level": "repeatable_read"})
    assert options.isolation_level == "REPEATABLE READ"
    retry = resolve_retry_options(config, {"retry_attempts": 0})
    assert retry.attempts == 0 and retry.delay == config.retry_delay


def test_autocommit_is_not_an_isolation_level_for_a_scope() -> None:
    with pytest.raises(ConfigurationError, match="AUTOCOMMIT"):
        resolve_scope_options(SessionConfig(), {"isolation_level": "AUTOCOMMIT"})


class _DriverError(Exception):
    def __init__(self, sqlstate: str | None = None, sqlite_errorcode: int | None = None):
        super().__init__("driver error")
        self.sqlstate = sqlstate
        self.sqlite_errorcode = sqlite_errorcode


class _Wrapped(Exception):
    def __init__(self, orig: BaseException):
        super().__init__("wrapped")
        self.orig = orig


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (_Wrapped(_DriverError("40001")), True),
        (_Wrapped(_DriverError("40P01")), True),
        (_Wrapped(_DriverError("08006")), True),
        (_Wrapped(_DriverError("57P01")), True),
        (_Wrapped(_DriverError("23505")), False),
        (_Wrapped(_DriverError("57014")), False),
        (_Wrapped(_DriverError("25P02")), False),
        (_Wrapped(_DriverError(sqlite_errorcode=517)), True),
        (_Wrapped(_DriverError(sqlite_errorcode=6)), True),
        (_Wrapped(_DriverError(sqlite_errorcode=19)), False),
        (ConnectionRefusedError(), True),
        (TimeoutError(), False),
        (ValueError(), False),
    ],
)
def test_is_transient_reads_codes_not_classes(error: BaseException, transient: bool) -> None:
    assert is_transient(error) is transient


def test_json_of_a_default_snapshot_needs_no_database() -> None:
    from sessionscope import SessionMonitor

    snapshot = SessionMonitor("m").snapshot()
    assert json.loads(json.dumps(snapshot))["sessions"]["active"] == 0
    assert snapshot["pool"]["size"] is None
