"""W3C trace context over NATS headers, and the node's OpenTelemetry spans.

Two modes, chosen per call by whether an SDK tracer provider is installed (`recording()`):

- recording (OTLP configured, or a test's in-memory exporter): every request, journal entry and
  stream message handled gets a span, a child of the `traceparent` it arrived with, and what the node
  sends next carries that span's context;
- not recording (the default): no span is created at all. The incoming `traceparent`/`tracestate`
  are kept in a context variable and forwarded verbatim on every message the node sends while
  handling it, so traces stay whole through a node that records nothing, for the price of a dict copy.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import Link, Span, SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from mesh.tracing import TRACE_HEADERS, recording

_PROPAGATOR = TraceContextTextMapPropagator()
#: The trace headers of the message being handled, when no span records it (see the module).
_CARRIED: contextvars.ContextVar[Mapping[str, str] | None] = contextvars.ContextVar("qt_trace", default=None)


def trace_headers(headers: Mapping[str, str] | None) -> dict[str, str]:
    """Just the W3C trace headers of a message's headers."""
    if not headers:
        return {}
    return {key: value for key in TRACE_HEADERS if (value := headers.get(key))}


def extract(headers: Mapping[str, str] | None) -> otel_context.Context:
    """The context carried by `traceparent`/`tracestate` headers (empty when absent or invalid)."""
    return _PROPAGATOR.extract(trace_headers(headers))


def inject(headers: dict[str, str] | None = None) -> dict[str, str]:
    """`headers` (copied) with the trace context of what is being handled: the current span's when
    recording, else the `traceparent`/`tracestate` the handled message arrived with."""
    carrier = dict(headers or {})
    if recording():
        _PROPAGATOR.inject(carrier)
    else:
        carried = _CARRIED.get()
        if carried:
            carrier.update(carried)
    return carrier


def current_trace_id() -> str | None:
    """The trace id being handled (for log lines), recorded or carried."""
    span = trace.get_current_span().get_span_context()
    if span.is_valid:
        return f"{span.trace_id:032x}"
    carried = _CARRIED.get()
    parent = carried.get("traceparent", "") if carried else ""
    return parent[3:35] if len(parent) >= 35 else None


@contextmanager
def handling(tracer: trace.Tracer, name: str, headers: Mapping[str, str] | None, kind: SpanKind,
             links: Sequence[Mapping[str, str]] = ()) -> Iterator[Span | None]:
    """Handle one message under its trace: a span (child of `headers`' context) when recording, else
    the carried headers only. `links` are other messages' headers this one stands for (a batch)."""
    if recording():
        span_links = [Link(context) for h in links
                      if (context := trace.get_current_span(extract(h)).get_span_context()).is_valid]
        with tracer.start_as_current_span(name, context=extract(headers), kind=kind, links=span_links,
                                          record_exception=False, set_status_on_exception=False) as span:
            yield span
        return
    token = _CARRIED.set(trace_headers(headers))
    try:
        yield None
    finally:
        _CARRIED.reset(token)


def fail(span: Span | None, message: str) -> None:
    """Mark a recorded span failed (no-op when nothing records)."""
    if span is not None:
        span.set_status(StatusCode.ERROR, message)
