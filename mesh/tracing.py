"""OpenTelemetry set-up shared by every process (nodes and gateway): OTLP export when configured."""

from __future__ import annotations

import logging
import os
from typing import Final

from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

log = logging.getLogger(__name__)
#: The W3C headers a message carries its trace in (HTTP and NATS alike).
TRACE_HEADERS: Final = ("traceparent", "tracestate")


def setup_tracing(service: str) -> trace.Tracer:
    """Record spans and export them over OTLP/HTTP when `OTEL_EXPORTER_OTLP_ENDPOINT` is set; else record
    nothing (no span is created at all: see `recording`)."""
    if os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"):
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        provider = TracerProvider(resource=Resource.create({"service.name": f"qt-{service}"}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        trace.set_tracer_provider(provider)
        log.info("exporting spans over OTLP to %s", os.environ["OTEL_EXPORTER_OTLP_ENDPOINT"])
    return trace.get_tracer(f"qt.{service}")


def recording() -> bool:
    """Whether an SDK tracer provider is installed (spans are recorded and exported).

    Asked for every message handled: it reads the global that `trace.set_tracer_provider` sets, since
    `trace.get_tracer_provider()` looks up an environment variable on each call until one is set (~2 us).
    """
    return isinstance(trace._TRACER_PROVIDER, TracerProvider)
