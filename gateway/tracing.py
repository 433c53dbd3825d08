"""W3C trace context at the edge: continue the caller's `traceparent` or start one, forward it, echo it.

The gateway's hop gets a span id of its own under the caller's trace id; that `traceparent` goes on
every NATS request the request causes and back to the caller in the response header. When an SDK
tracer provider is installed (OTLP configured) that hop is a recorded SERVER span, the root of every
node's span for the request; otherwise no span is created, only its ids.
"""

from __future__ import annotations

import random
from typing import Final

from opentelemetry import trace
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mesh.tracing import TRACE_HEADERS, recording

TRACE_KEY: Final = "qt.trace"
_PROPAGATOR = TraceContextTextMapPropagator()
_TRACER = trace.get_tracer("qt.gateway")
#: Trace and span ids are identifiers, not secrets: OpenTelemetry's own generator uses `random` too. The
#: `secrets` module read /dev/urandom (a system call) twice per request: 3% of the gateway's CPU.
_IDS = random.Random()


def child_context(headers: dict[str, str]) -> dict[str, str]:
    """`traceparent` (and `tracestate`) for this hop: the caller's trace id when valid, else a new trace."""
    parent = trace.get_current_span(_PROPAGATOR.extract(headers)).get_span_context()
    if parent.is_valid:
        trace_id, flags, state = parent.trace_id, parent.trace_flags, parent.trace_state
    else:
        trace_id, flags, state = _IDS.getrandbits(128) or 1, TraceFlags(TraceFlags.SAMPLED), None
    span = SpanContext(trace_id, _IDS.getrandbits(64) or 1, is_remote=False, trace_flags=flags, trace_state=state)
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, trace.set_span_in_context(NonRecordingSpan(span)))
    return carrier


def trace_headers(scope: Scope) -> dict[str, str]:
    """The trace headers of the request in `scope` (set by `TraceMiddleware`), for NATS calls."""
    return dict(scope.get(TRACE_KEY) or {})


class TraceMiddleware:
    """Plain ASGI: give each HTTP request (and WebSocket) its trace context and echo `traceparent`."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        incoming = Headers(scope=scope)
        caller = {k: v for k in TRACE_HEADERS if (v := incoming.get(k))}
        if recording():
            await self._recorded(scope, receive, send, caller)
            return
        carrier = child_context(caller)
        scope[TRACE_KEY] = carrier
        if scope["type"] == "websocket":  # no response head to stamp: every frame goes straight out
            await self.app(scope, receive, send)
            return

        async def send_with_trace(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["traceparent"] = carrier["traceparent"]
            await send(message)

        await self.app(scope, receive, send_with_trace)

    async def _recorded(self, scope: Scope, receive: Receive, send: Send, caller: dict[str, str]) -> None:
        """The request as a recorded span, child of the caller's `traceparent` (a new trace without one)."""
        name = f"{scope.get('method', 'WS')} {scope['path']}"
        with _TRACER.start_as_current_span(name, context=_PROPAGATOR.extract(caller), kind=SpanKind.SERVER,
                                           attributes={"url.path": scope["path"]}) as span:
            carrier: dict[str, str] = {}
            _PROPAGATOR.inject(carrier)
            scope[TRACE_KEY] = carrier

            async def send_with_trace(message: Message) -> None:
                if message["type"] == "http.response.start":
                    MutableHeaders(scope=message)["traceparent"] = carrier["traceparent"]
                    span.set_attribute("http.response.status_code", message["status"])
                    if message["status"] >= 500:
                        span.set_status(StatusCode.ERROR)
                await send(message)

            await self.app(scope, receive, send_with_trace if scope["type"] == "http" else send)
