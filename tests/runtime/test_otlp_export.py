"""With `OTEL_EXPORTER_OTLP_ENDPOINT` set a node and the gateway export their spans over OTLP/HTTP, children
of the caller's trace."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from contracts.codec import Wire
from contracts.subjects import MARKETDATA_SERVICE, marketdata_subject
from mesh.rpc import call
from tests.conftest import wait_for_service
from tests.gateway.harness import GatewayProcess
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer, free_port

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class Collector:
    """The smallest OTLP/HTTP trace receiver: each POST body parsed as an `ExportTraceServiceRequest`."""

    def __init__(self) -> None:
        self.requests: asyncio.Queue[ExportTraceServiceRequest] = asyncio.Queue()

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                body = await reader.readexactly(length)
                if head.startswith(b"POST /v1/traces "):
                    await self.requests.put(ExportTraceServiceRequest.FromString(body))
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-protobuf\r\nContent-Length: 0\r\n\r\n")
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()


    async def span(self, name: str) -> tuple[str, Span]:
        """The first exported span called `name`, with the `service.name` of its resource."""
        while True:
            exported = await asyncio.wait_for(self.requests.get(), timeout=30)
            for resource in exported.resource_spans:
                service = {a.key: a.value.string_value for a in resource.resource.attributes}["service.name"]
                for scoped in resource.scope_spans:
                    for span in scoped.spans:
                        if span.name == name:
                            return service, span


@pytest.fixture
async def collector() -> AsyncIterator[tuple[Collector, dict[str, str]]]:
    """A collector on a free port, and the environment that points a process's exporter at it."""
    made, port = Collector(), free_port()
    server = await asyncio.start_server(made.handle, "127.0.0.1", port)
    try:
        yield made, {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{port}", "OTEL_BSP_SCHEDULE_DELAY": "50"}
    finally:
        server.close()


def assert_child_of_caller(span: Span) -> None:
    assert span.trace_id.hex() == CALLER.split("-")[1]
    assert span.parent_span_id.hex() == CALLER.split("-")[2]


async def test_a_node_exports_its_request_span_over_otlp(own_nats: NatsServer, own_nc: Client, tmp_path: Path,
                                                         collector: tuple[Collector, dict[str, str]]) -> None:
    received, env = collector
    node = NodeProcess("nodes.market_data", own_nats.url, tmp_path / "md", own_nats.data_dir, extra_env=env).start()
    try:
        await wait_for_service(own_nc, MARKETDATA_SERVICE, timeout_s=30)
        await call(own_nc, marketdata_subject("ticker"), {"instrument": "AAPL"}, wire=Wire.JSON,
                   headers={"traceparent": CALLER})
        service, span = await received.span("marketdata.ticker")
    finally:
        node.kill()
    assert service == "qt-market_data"
    assert_child_of_caller(span)


async def test_the_gateway_exports_its_http_span_over_otlp(own_nats: NatsServer, tmp_path: Path,
                                                           collector: tuple[Collector, dict[str, str]]) -> None:
    received, env = collector
    gateway = GatewayProcess(own_nats.url, tmp_path / "gw", own_nats.data_dir, env=env).start()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=5) as client:
            for _ in range(600):  # up once /health answers
                try:
                    answered = await client.get("/health", headers={"traceparent": CALLER})
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
        assert answered.status_code == 200
        service, span = await received.span("GET /health")
    finally:
        gateway.kill()
    assert service == "qt-gateway"
    assert_child_of_caller(span)
