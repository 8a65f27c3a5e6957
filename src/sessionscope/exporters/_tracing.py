"""Spans of a manager's transactions and decorated calls, made from its monitor's events.

One span per transaction, from the moment its scope asked for a connection to
its COMMIT or ROLLBACK; one per call of a decorated function, around its
attempts (each attempt is a transaction span under it). While a transaction
span is open it is the current span of the scope's task or thread, so spans
made inside the scope (opentelemetry-instrumentation-sqlalchemy's statement
spans, the application's own) are its children. Savepoints and retries are
span events; a transaction rolled back by an exception, or whose COMMIT
failed or has an unknown outcome, has status ERROR.

Monitor events arrive in the task or thread that caused them, which is what
makes the context work. Where a scope is entered and left in different
contexts (a sync manager's FastAPI dependency runs them in worker threads)
the span is still ended, but spans made in the endpoint are not its
children. Listeners exist only while instrumented: not instrumented, none of
this runs.
"""

from __future__ import annotations

import contextlib
import time
from contextvars import ContextVar, Token
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Span, Status, StatusCode, Tracer

from ..monitor import MonitorEvent

__all__ = ["TransactionTracer"]

# OpenTelemetry's database and server attributes (semantic conventions 1.3x, stable
# for these names); the rest are ours.
DB_SYSTEM = "db.system.name"
DB_NAMESPACE = "db.namespace"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"
CODE_FUNCTION = "code.function.name"
_SYSTEMS = {"postgresql": "postgresql", "sqlite": "sqlite", "mysql": "mysql", "mssql": "mssql"}
# Rollbacks that are the caller's choice, not a failure.
_NOT_FAILURES = frozenset({"requested", "not_committed"})


@dataclass(eq=False)
class _Call:
    function: str
    span: Span
    token: object  # otel_context.attach()'s
    call_token: Token[_Call | None] | None = None
    attempts: int = 0


@dataclass(eq=False)
class _Open:
    span: Span
    token: object  # otel_context.attach()'s
    unknown: bool = False  # a COMMIT of unknown outcome: ended when the session closes


class TransactionTracer:
    """A monitor listener of one manager that makes its spans."""

    def __init__(self, manager: Any, tracer: Tracer) -> None:
        self.tracer = tracer
        self.monitor = manager.monitor
        # The decorated call of this manager running in this task or thread.
        self.current_call: ContextVar[_Call | None] = ContextVar(
            "sessionscope_traced_call", default=None
        )
        self.calls = 0  # call spans open
        # After uninstrument(): no new spans; it stops listening once the open ones end.
        self.draining = False
        url = manager.engine.url
        backend = url.get_backend_name()
        self.attributes: dict[str, Any] = {
            DB_SYSTEM: _SYSTEMS.get(backend, backend),
            "sessionscope.manager": manager.name,
        }
        if url.database:
            self.attributes[DB_NAMESPACE] = url.database
        if url.host:
            self.attributes[SERVER_ADDRESS] = url.host
        if url.port:
            self.attributes[SERVER_PORT] = url.port
        self.open: dict[int, _Open] = {}  # by transaction id

    def __call__(self, event: MonitorEvent) -> None:
        handler = _HANDLERS.get(event.kind)
        if handler is not None:
            handler(self, event)
            if self.draining:
                self.stop()

    def stop(self) -> None:
        """Stop listening once no span of ours is open (else after the last ends)."""
        self.draining = True
        if not self.open and not self.calls:
            with contextlib.suppress(ValueError):  # already removed
                self.monitor.remove_listener(self)

    # -- calls ---------------------------------------------------------------------------

    def _call_started(self, event: MonitorEvent) -> None:
        if self.draining:
            return
        function = event.function or "?"
        span = self.tracer.start_span(
            "sessionscope.call " + function, attributes={**self.attributes, CODE_FUNCTION: function}
        )
        call = _Call(function, span, otel_context.attach(trace.set_span_in_context(span)))
        call.call_token = self.current_call.set(call)
        self.calls += 1

    def _call_ended(self, event: MonitorEvent) -> None:
        call = self.current_call.get()
        if call is None or call.function != event.function:
            return
        self.calls -= 1
        span = call.span
        span.set_attribute("sessionscope.attempts", call.attempts)
        if event.error is not None:
            _failed(span, event.error)
        span.end()
        if call.call_token is not None:
            self.current_call.reset(call.call_token)
        otel_context.detach(call.token)  # type: ignore[arg-type]

    def _retry(self, event: MonitorEvent) -> None:
        call = self.current_call.get()
        if call is None:
            return
        attributes: dict[str, Any] = {
            "sessionscope.retry.attempt": event.attempt or 0,
            "sessionscope.retry.reason": event.reason or "",
        }
        if event.error is not None:
            attributes[ERROR_TYPE] = type(event.error).__qualname__
        call.span.add_event("retry", attributes)

    # -- transactions --------------------------------------------------------------------

    def _opened(self, event: MonitorEvent) -> None:
        if self.draining:
            return
        assert event.transaction_id is not None
        attributes = {
            **self.attributes,
            "sessionscope.transaction_id": event.transaction_id,
            "sessionscope.read_only": bool(event.read_only),
            "sessionscope.connection_wait": event.duration or 0.0,
        }
        if event.propagation is not None:
            attributes["sessionscope.propagation"] = event.propagation
        if event.isolation_level is not None:
            attributes["db.transaction.isolation_level"] = event.isolation_level
        call = self.current_call.get()
        # An attempt of the call: opened right under its span (not a requires_new
        # scope of its body, whose current span is the attempt's).
        if call is not None and trace.get_current_span() is call.span:
            call.attempts += 1
            attributes["sessionscope.attempt"] = call.attempts
        # It began when the scope asked for its connection.
        started = time.time_ns() - int((event.duration or 0.0) * 1e9)
        span = self.tracer.start_span(
            "sessionscope.transaction", attributes=attributes, start_time=started
        )
        token = otel_context.attach(trace.set_span_in_context(span))
        self.open[event.transaction_id] = _Open(span, token)

    def _savepoint(self, event: MonitorEvent) -> None:
        opened = self.open.get(event.transaction_id or 0)
        if opened is not None:
            opened.span.add_event(event.kind.replace("_", " "))

    def _unknown(self, event: MonitorEvent) -> None:
        """A COMMIT of unknown outcome: at the scope's exit, its session closes next;
        in the body (its own session.commit()), the scope may go on."""
        opened = self.open.get(event.transaction_id or 0)
        if opened is not None:
            opened.unknown = True
            opened.span.add_event("commit outcome unknown")
            _failed(opened.span, event.error)

    def _closed(self, event: MonitorEvent) -> None:
        opened = self.open.get(event.transaction_id or 0)
        if opened is not None and opened.unknown:
            opened.span.set_attribute("sessionscope.outcome", "unknown")
            self._end(event)

    def _ended(self, event: MonitorEvent) -> None:
        opened = self.open.get(event.transaction_id or 0)
        if opened is None:
            return
        span = opened.span
        if event.kind == "committed":
            span.set_attribute("sessionscope.outcome", "committed")
        else:
            span.set_attribute("sessionscope.outcome", "rolled_back")
            span.set_attribute("sessionscope.rollback.cause", event.reason or "")
            if event.reason not in _NOT_FAILURES:
                _failed(span, event.error)
        self._end(event)

    def _end(self, event: MonitorEvent) -> None:
        opened = self.open.pop(event.transaction_id or 0)
        span = opened.span
        span.end()
        # Only where it was attached: a scope may be left in another context.
        if trace.get_current_span() is span:
            otel_context.detach(opened.token)  # type: ignore[arg-type]


def _failed(span: Span, error: BaseException | None) -> None:
    if error is not None:
        span.record_exception(error)
        span.set_attribute(ERROR_TYPE, type(error).__qualname__)
    span.set_status(Status(StatusCode.ERROR, None if error is None else str(error)[:200]))


_HANDLERS = {
    "call_started": TransactionTracer._call_started,
    "call_ended": TransactionTracer._call_ended,
    "retry": TransactionTracer._retry,
    "session_opened": TransactionTracer._opened,
    "savepoint_opened": TransactionTracer._savepoint,
    "savepoint_released": TransactionTracer._savepoint,
    "savepoint_rolled_back": TransactionTracer._savepoint,
    "committed": TransactionTracer._ended,
    "rolled_back": TransactionTracer._ended,
    "commit_outcome_unknown": TransactionTracer._unknown,
    "session_closed": TransactionTracer._closed,
}
