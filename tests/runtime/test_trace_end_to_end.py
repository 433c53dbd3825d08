"""One W3C trace per order: HTTP -> gateway -> clearing -> wallet and matching -> TRADES -> market data.

Every node runs in this process (its `serve()` as a task) against a real nats-server, with the gateway
app on httpx's ASGI transport, so one SDK tracer provider with an in-memory exporter sees every span.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from contracts.codec import Wire
from contracts.credentials import nkey_seed_path
from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER, Role
from contracts.subjects import clearing_subject, wallet_subject
from gateway.app import create_app
from gateway.keys import ensure_key_pair, load_private
from gateway.settings import Settings
from gateway.tokens import mint
from mesh.rpc import call
from nodes.runtime.config import NodeConfig
from tests.conftest import node_config, wait_for_service
from tooling.natsserver import NatsServer

SPANS = InMemorySpanExporter()
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> InMemorySpanExporter:
    """The process's SDK tracer provider (installed once: OpenTelemetry allows one) feeding `SPANS`."""
    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        provider = TracerProvider()
        trace.set_tracer_provider(provider)
    if not getattr(provider, "_qt_test_exporter", False):
        provider.add_span_processor(SimpleSpanProcessor(SPANS))
        provider._qt_test_exporter = True  # type: ignore[attr-defined]
    SPANS.clear()
    return SPANS


Serve = Callable[[NodeConfig, asyncio.Event], Awaitable[None]]


@pytest.fixture
async def mesh(own_nats: NatsServer, own_nc: Client, tmp_path: Path, spans: InMemorySpanExporter
               ) -> AsyncIterator[None]:
    """Wallet, matching, clearing and market data, each served by a task of this event loop."""
    from nodes.clearing.node import serve as clearing
    from nodes.market_data.node import serve as market_data
    from nodes.matching.node import serve as matching
    from nodes.wallet.node import serve as wallet

    stop = asyncio.Event()
    tasks: list[asyncio.Task[None]] = []
    try:
        for role, service, serve in (("wallet", "wallet", wallet), ("matching", "matching", matching),
                                     ("clearing", "clearing", clearing), ("market_data", "marketdata", market_data)):
            task = asyncio.create_task(serve(node_config(own_nats, tmp_path / role, role), stop))
            tasks.append(task)
            await wait_for_service(own_nc, service, task)
        yield
    finally:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), timeout=30)


@pytest.fixture
async def http(own_nats: NatsServer, tmp_path: Path, mesh: None) -> AsyncIterator[tuple[httpx.AsyncClient, Path]]:
    """The gateway app (its lifespan running) behind an httpx client; and its data dir (the JWT keys)."""
    data = tmp_path / "gateway"
    app = create_app(Settings(nats_url=own_nats.url, data_dir=data,
                              nkey_seed=nkey_seed_path(own_nats.data_dir, "gateway")))
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://gateway", timeout=30) as client:
        for _ in range(200):
            if (await client.get("/ready")).status_code == 200:
                break
            await asyncio.sleep(0.05)
        yield client, data


async def until(found: Callable[[], bool], what: str) -> None:
    """Wait (bounded) for spans that are exported after the HTTP reply (stream consumers)."""
    for _ in range(400):
        if found():
            return
        await asyncio.sleep(0.025)
    raise AssertionError(f"never saw {what}")


@pytest.mark.slow  # four nodes and the gateway start in-process
async def test_one_order_is_one_trace_with_every_hop_under_the_http_span(
        own_nc: Client, http: tuple[httpx.AsyncClient, Path], spans: InMemorySpanExporter) -> None:
    client, gateway_data = http
    buyer, seller = f"buyer-{uuid.uuid4().hex[:8]}", f"seller-{uuid.uuid4().hex[:8]}"
    for account, asset, amount in ((buyer, "USD", "2000.00"), (seller, "NVDA", "1.0000")):
        await call(own_nc, wallet_subject("deposit", 0), {"account": account, "asset": asset, "amount": amount,
                                                       "op_id": uuid.uuid4().hex}, wire=Wire.JSON)
    resting = {"account": seller, "instrument": "NVDA", "side": "SELL", "price": "825.50", "qty": "1.0000"}
    await call(own_nc, clearing_subject("place_order"), resting, wire=Wire.JSON, timeout=15)
    token = mint(load_private(ensure_key_pair(gateway_data)[0]), account=buyer, role=Role.TRADER,
                 ttl_s=3600, issuer=JWT_ISSUER, audience=JWT_AUDIENCE)

    # IOC for two against one resting: one fills, the engine cancels the other (a `cancelled` report,
    # the kind clearing's EXEC consumer takes), so the trace reaches that consumer too
    placed = await client.post("/v1/orders", json={"instrument": "NVDA", "side": "BUY", "price": "825.50",
                                                   "qty": "2.0000", "tif": "IOC"},
                               headers={"Authorization": f"Bearer {token}", "Idempotency-Key": uuid.uuid4().hex,
                                        "traceparent": CALLER})

    assert placed.status_code == 201, placed.text
    assert placed.json()["order_status"] == "cancelled" and placed.json()["filled"] == "1.0000", placed.json()
    trace_id = int(CALLER.split("-")[1], 16)

    def ours() -> list[ReadableSpan]:
        return [s for s in spans.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id]

    hops = {"POST /v1/orders", "clearing.place_order", "matching.NVDA.submit", "orders.append", "orders.apply",
            "trades.fold", "EXEC.clearing-exec"}
    await until(lambda: hops <= {s.name for s in ours()}, f"every hop of {sorted(hops)}")
    traced = ours()
    names = {s.name for s in traced}
    assert {"wallet.hold", "wallet.batch"} & names, names  # reserve_funds, alone or batched
    assert {"wallet.settle", "wallet.batch"} & names, names  # process_fills
    (root,) = [s for s in traced if s.name == "POST /v1/orders"]
    assert root.parent is not None and root.parent.span_id == int(CALLER.split("-")[2], 16)  # the caller's
    by_id = {s.context.span_id: s for s in traced if s.context is not None}
    for span in traced:
        ancestor = span
        while ancestor is not root:
            assert ancestor.parent is not None and ancestor.parent.span_id in by_id, \
                f"{span.name} is not under the HTTP span"
            ancestor = by_id[ancestor.parent.span_id]
