"""The Grafana dashboard (dashboards/sessionscope.json): valid, and every query names a
metric the Prometheus exporter really exports, read from a real registry's scrape of
managers that ran work (SQLite, and PostgreSQL with a replica for the per-engine ones)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import text

from sessionscope import SessionConfig, SessionManager
from sessionscope.exporters import prometheus
from tests.pg_server import PostgresServer

DASHBOARD = Path(__file__).parent.parent / "dashboards" / "sessionscope.json"
METRIC = re.compile(r"\bsessionscope_[a-z_]+\b")
# What a family of each type is scraped as.
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def queries(dashboard: dict[str, Any]) -> list[str]:
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["query"]["query"])
    return exprs


def exported(registry: CollectorRegistry) -> set[str]:
    names = set()
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        names.update(family.name + suffix for suffix in SUFFIXES[family.type])
    return names


def test_the_dashboard_is_a_valid_grafana_dashboard() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] and dashboard["title"] == "sessionscope"
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids)), "panel ids repeat"
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        for target in panel["targets"]:
            assert METRIC.search(target["expr"]), target
            assert target["expr"].count("(") == target["expr"].count(")"), target["expr"]
    variables = {v["name"] for v in dashboard["templating"]["list"]}
    assert {"datasource", "manager"} <= variables


@pytest.mark.postgres
def test_every_query_names_a_metric_the_exporter_exports(
    tmp_path: Path, pg_server: PostgresServer, pg_replica: PostgresServer
) -> None:
    config = SessionConfig(log_level="ERROR", slow_transaction_seconds=0)
    plain = SessionManager("sqlite:///" + str(tmp_path / "d.db"), config=config)
    replicated = SessionManager(
        pg_server.url("psycopg"), replicas=[pg_replica.url("psycopg")], config=config
    )
    registry = CollectorRegistry()
    prometheus.register(plain, replicated, registry=registry)
    try:
        for manager in (plain, replicated):
            with manager.session_scope() as session:
                session.execute(text("SELECT 1"))
        with replicated.session_scope(read_only=True) as session:
            session.execute(text("SELECT 1"))
        names = exported(registry)
        wanted = {name for expr in queries(json.loads(DASHBOARD.read_text())) for name in
                  METRIC.findall(expr)}  # fmt: skip
        assert wanted, "the dashboard queries no sessionscope metric"
        assert wanted - names == set(), f"not exported: {sorted(wanted - names)}"
        # And the dashboard shows every family the exporter has.
        families = {re.sub(r"(_total|_bucket|_sum|_count)$", "", n) for n in names}
        shown = {re.sub(r"(_total|_bucket|_sum|_count)$", "", n) for n in wanted}
        assert families - shown == set(), f"exported, not shown: {sorted(families - shown)}"
    finally:
        plain.dispose()
        replicated.dispose()
