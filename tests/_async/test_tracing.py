"""Tracing (README "Tracing"): a span per transaction and per decorated call, from the
real OpenTelemetry SDK with its in-memory exporter; statement spans of
opentelemetry-instrumentation-sqlalchemy made in a scope are its children."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.sqlalchemy import SQLAlchemyInstrumentor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import text

from sessionscope import Rollback
from sessionscope._async import AsyncSessionManager
from sessionscope._async_compat import sync_engine_of
from sessionscope.exporters import otel
from sessionscope.exporters._tracing import TransactionTracer
from tests.models import User
from tests.support import Database

TRANSACTION = "sessionscope.transaction"


class Boom(Exception):
    pass


class Flaky(Exception):
    pass


@pytest.fixture
def spans(manager: AsyncSessionManager) -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = otel.instrument(manager, meter_provider=MeterProvider(), tracer_provider=provider)
    yield exporter
    handle.uninstrument()
    provider.shutdown()


def named(exporter: InMemorySpanExporter, name: str) -> list[ReadableSpan]:
    return [span for span in exporter.get_finished_spans() if span.name == name]


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_span_per_transaction_with_the_database_attributes(
    manager: AsyncSessionManager, database: Database, spans: InMemorySpanExporter
) -> None:
    async with manager.session_scope() as session:
        session.add(User(name="ada"))
    async with manager.session_scope(read_only=True) as session:
        await session.execute(text("SELECT 1"))
    written, read = named(spans, TRANSACTION)
    url = manager.engine.url
    expected = {
        "db.system.name": "postgresql" if database.is_postgres else "sqlite",
        "sessionscope.outcome": "committed",
        "sessionscope.propagation": "required",
    }
    assert expected.items() <= attributes(written).items()
    assert attributes(written)["db.namespace"] == url.database
    if database.is_postgres:
        assert attributes(written)["server.address"] == url.host
        assert attributes(written)["server.port"] == url.port
    assert attributes(written)["sessionscope.read_only"] is False
    assert attributes(read)["sessionscope.read_only"] is True
    assert written.status.status_code is StatusCode.UNSET
    assert written.end_time is not None and written.start_time is not None


async def test_a_rollback_by_exception_is_an_error_and_savepoints_are_events(
    manager: AsyncSessionManager, spans: InMemorySpanExporter
) -> None:
    with pytest.raises(Boom):
        async with manager.session_scope():
            async with manager.session_scope(propagation="nested") as nested:
                await nested.execute(text("SELECT 1"))
            with pytest.raises(Boom):
                async with manager.session_scope(propagation="nested"):
                    raise Boom("inner")
            raise Boom("outer")
    async with manager.session_scope():
        raise Rollback
    failed, requested = named(spans, TRANSACTION)
    assert failed.status.status_code is StatusCode.ERROR
    assert attributes(failed)["sessionscope.rollback.cause"] == "exception"
    assert attributes(failed)["error.type"] == "Boom"
    assert [e.name for e in failed.events] == [
        "savepoint opened",
        "savepoint released",
        "savepoint opened",
        "savepoint rolled back",
        "exception",
    ]
    assert requested.status.status_code is StatusCode.UNSET  # asked for: no failure
    assert attributes(requested)["sessionscope.rollback.cause"] == "requested"


async def test_a_retried_call_is_a_parent_of_its_attempts(
    manager: AsyncSessionManager, spans: InMemorySpanExporter
) -> None:
    attempts: list[int] = []

    @manager.with_session(retry_on=lambda e: isinstance(e, Flaky), retry_delay=0)
    async def flaky(session: Any) -> int:
        await session.execute(text("SELECT 1"))
        attempts.append(1)
        if len(attempts) == 1:
            raise Flaky
        return len(attempts)

    assert await flaky() == 2
    (call,) = [s for s in spans.get_finished_spans() if s.name.startswith("sessionscope.call")]
    assert call.name.endswith("flaky")
    first, second = named(spans, TRANSACTION)
    assert first.parent is not None and first.parent.span_id == call.context.span_id
    assert second.parent is not None and second.parent.span_id == call.context.span_id
    assert [attributes(s)["sessionscope.attempt"] for s in (first, second)] == [1, 2]
    assert first.status.status_code is StatusCode.ERROR
    assert attributes(call)["sessionscope.attempts"] == 2
    (retry,) = call.events
    assert retry.name == "retry"
    assert dict(retry.attributes or {})["sessionscope.retry.reason"] == "retry_on"
    assert call.status.status_code is StatusCode.UNSET


async def test_statement_spans_are_children_of_their_transaction(
    manager: AsyncSessionManager, spans: InMemorySpanExporter
) -> None:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(spans))
    instrumentor = SQLAlchemyInstrumentor()
    engine = sync_engine_of(manager.engine)
    # 0.66b2 declares sqlalchemy < 2.1, and works with 2.1 (not checked: skip_dep_check).
    instrumentor.instrument(engine=engine, tracer_provider=provider, skip_dep_check=True)
    try:
        async with manager.session_scope() as session:
            await session.execute(text("SELECT 1"))
            async with manager.session_scope(propagation="requires_new") as other:
                await other.execute(text("SELECT 2"))
    finally:
        instrumentor.uninstrument(engine=engine)
    outer, inner = sorted(named(spans, TRANSACTION), key=lambda s: s.start_time or 0)
    statements = [s for s in spans.get_finished_spans() if s.name.startswith("SELECT")]
    parents = {s.attributes["db.statement"]: s.parent for s in statements}  # type: ignore[index]
    assert parents["SELECT 1"].span_id == outer.context.span_id  # type: ignore[union-attr]
    assert parents["SELECT 2"].span_id == inner.context.span_id  # type: ignore[union-attr]
    assert inner.parent is not None and inner.parent.span_id == outer.context.span_id


async def test_uninstrument_stops_the_spans(manager: AsyncSessionManager) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = otel.instrument(manager, meter_provider=MeterProvider(), tracer_provider=provider)
    async with manager.session_scope():
        pass
    handle.uninstrument()
    async with manager.session_scope():
        pass
    assert len(named(exporter, TRANSACTION)) == 1
    assert manager.monitor.listened is False


async def test_only_a_tracer_provider_turns_tracing_on_and_once_per_manager(
    manager: AsyncSessionManager, spans: InMemorySpanExporter
) -> None:
    metrics_only = otel.instrument(manager, meter_provider=MeterProvider())
    try:
        assert not any(
            isinstance(listener, TransactionTracer) for listener in metrics_only._tracers
        )
        with pytest.raises(ValueError, match="traced already"):
            otel.instrument(
                manager, meter_provider=MeterProvider(), tracer_provider=TracerProvider()
            )
    finally:
        metrics_only.uninstrument()


async def test_uninstrumented_mid_scope_the_open_spans_still_end(
    manager: AsyncSessionManager,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    handle = otel.instrument(manager, meter_provider=MeterProvider(), tracer_provider=provider)

    @manager.with_session
    async def work(session: Any) -> None:
        await session.execute(text("SELECT 1"))
        handle.uninstrument()  # while the call and its transaction are open

    await work()
    async with manager.session_scope():  # no span any more
        pass
    assert [s.name for s in exporter.get_finished_spans()] == [
        TRANSACTION,
        "sessionscope.call " + work.__qualname__,
    ]
    assert not trace.get_current_span().get_span_context().is_valid  # nothing left current
    assert manager.monitor.listened is False


async def test_only_the_calls_own_attempts_are_counted(
    manager: AsyncSessionManager, spans: InMemorySpanExporter
) -> None:
    @manager.with_session
    async def audited(session: Any) -> None:
        async with manager.session_scope(propagation="requires_new") as audit:
            await audit.execute(text("SELECT 1"))

    await audited()
    (call,) = [s for s in spans.get_finished_spans() if s.name.startswith("sessionscope.call")]
    assert attributes(call)["sessionscope.attempts"] == 1
    own, audit = sorted(named(spans, TRANSACTION), key=lambda s: s.start_time or 0)
    assert attributes(own)["sessionscope.attempt"] == 1
    assert "sessionscope.attempt" not in attributes(audit)
    assert audit.parent is not None and audit.parent.span_id == own.context.span_id
