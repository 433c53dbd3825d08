"""ServiceClient against a real nats-server: the breaker opens, fails fast, probes, closes; retries."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from nats.aio.client import Client
from pydantic import BaseModel
from rich.console import Console

from contracts.errors import ErrorCode, QtError
from mesh.rpc import discover
from nodes.runtime.breaker import BreakerRegistry, BreakerState, CircuitBreaker
from nodes.runtime.client import ServiceClient
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.service import NodeService
from tests.polling import eventually
from tooling import render


class Ask(BaseModel):
    """What the test responder should answer: success, or the error code `fail`."""

    fail: ErrorCode | None = None


class Responder:
    """Counts the requests it receives and answers as asked."""

    def __init__(self) -> None:
        self.requests = 0

    async def answer(self, ask: Ask) -> dict[str, bool]:
        self.requests += 1
        if ask.fail is not None:
            raise QtError(ask.fail, "failing on purpose")
        return {"ok": True}


def service_name() -> str:
    return f"brk-{uuid.uuid4().hex[:8]}"


@asynccontextmanager
async def serving(nc: Client, name: str, responder: Responder,
                  breakers: BreakerRegistry | None = None) -> AsyncIterator[NodeService]:
    """A real NodeService named `name` with one `ask` endpoint, stopped on exit."""
    service = NodeService(nc, name=name, version="0.0.1", description="breaker test",
                          metrics=NodeMetrics(name), breakers=breakers)
    service.route("ask", Ask)(responder.answer)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def open_breaker(client: ServiceClient) -> None:
    """Fail calls to a service nobody serves until the client's breaker opens."""
    for _ in range(client.breaker.failure_threshold):
        with pytest.raises(QtError) as failed:
            await client.call("ask", {}, idempotent=False)
        assert failed.value.code is ErrorCode.UNAVAILABLE
    assert client.breaker.state(time.monotonic()) is BreakerState.OPEN


async def until_half_open(breaker: CircuitBreaker, timeout_s: float = 10.0) -> None:
    await eventually(lambda: breaker.state(time.monotonic()) is BreakerState.HALF_OPEN, timeout_s=timeout_s,
                     every_s=0.02, what="breaker half_open")


async def test_an_open_breaker_fails_fast_without_sending_a_request(nc: Client) -> None:
    name = service_name()
    client = ServiceClient(nc, name, breaker=CircuitBreaker(name, failure_threshold=3, open_for_s=60),
                           timeout_s=2)
    await open_breaker(client)
    listener = await nc.subscribe(f"{name}.>")

    with pytest.raises(QtError) as refused:
        await client.call("ask", {}, idempotent=True)
    await nc.flush()

    assert refused.value.code is ErrorCode.UNAVAILABLE
    assert refused.value.message == f"{name} circuit open"
    assert refused.value.detail == {"breaker": name, "state": "open"}
    assert listener.pending_msgs == 0
    await listener.unsubscribe()


async def test_after_the_cooldown_a_trial_call_reaches_the_service_and_closes_the_breaker(nc: Client) -> None:
    name = service_name()
    client = ServiceClient(nc, name, breaker=CircuitBreaker(name, failure_threshold=2, open_for_s=0.2),
                           timeout_s=2)
    await open_breaker(client)
    responder = Responder()

    async with serving(nc, name, responder):
        await until_half_open(client.breaker)
        reply = await client.call("ask", {}, idempotent=False)

    assert reply == {"ok": True}
    assert responder.requests == 1
    assert client.breaker.state(time.monotonic()) is BreakerState.CLOSED
    assert client.breaker.opened_count == 1


async def test_a_non_idempotent_call_is_sent_once(nc: Client) -> None:
    name, responder = service_name(), Responder()
    client = ServiceClient(nc, name, retries=2, backoff_s=0.001, timeout_s=2)

    async with serving(nc, name, responder):
        with pytest.raises(QtError) as failed:
            await client.call("ask", {"fail": "unavailable"}, idempotent=False)

    assert failed.value.code is ErrorCode.UNAVAILABLE
    assert responder.requests == 1


async def test_an_idempotent_call_is_retried_on_transient_errors(nc: Client) -> None:
    name, responder = service_name(), Responder()
    client = ServiceClient(nc, name, retries=2, backoff_s=0.001, timeout_s=2)

    async with serving(nc, name, responder):
        with pytest.raises(QtError) as failed:
            await client.call("ask", {"fail": "timeout"}, idempotent=True)

    assert failed.value.code is ErrorCode.TIMEOUT
    assert responder.requests == 3
    assert client.breaker.failures == 3


async def test_business_errors_neither_open_the_breaker_nor_are_retried(nc: Client) -> None:
    name, responder = service_name(), Responder()
    client = ServiceClient(nc, name, breaker=CircuitBreaker(name, failure_threshold=2), backoff_s=0.001,
                           timeout_s=2)

    async with serving(nc, name, responder):
        for _ in range(5):
            with pytest.raises(QtError) as refused:
                await client.call("ask", {"fail": "insufficient_funds"}, idempotent=True)
            assert refused.value.code is ErrorCode.INSUFFICIENT_FUNDS

    assert responder.requests == 5
    assert client.breaker.state(time.monotonic()) is BreakerState.CLOSED
    assert client.breaker.failures == 0


@pytest.fixture
async def reporting(nc: Client) -> AsyncIterator[str]:
    """A running service whose registry holds one open breaker named `wallet`; yields the service name."""
    name, dependency = service_name(), service_name()
    registry = BreakerRegistry()
    breaker = registry.add(CircuitBreaker("wallet", failure_threshold=2, open_for_s=60))
    await open_breaker(ServiceClient(nc, dependency, breaker=breaker, timeout_s=2))
    async with serving(nc, name, Responder(), registry):
        yield name


OPEN_WALLET = {"wallet": {"state": "open", "failures": 2, "opened_count": 1}}


async def test_srv_stats_and_the_breakers_endpoint_carry_the_breaker_states(nc: Client, reporting: str) -> None:
    stats = json.loads((await nc.request(f"$SRV.STATS.{reporting}", b"", timeout=2)).data)
    answered = json.loads((await nc.request(f"{reporting}.breakers", b"{}", timeout=2)).data)

    data = {e["name"]: e["data"] for e in stats["endpoints"]}
    assert data["breakers"] == {"breakers": OPEN_WALLET}
    assert data["ask"] is None
    assert answered == {"breakers": OPEN_WALLET}


async def test_metrics_export_the_breaker_state_gauge(nc: Client, reporting: str) -> None:
    metrics = (await nc.request(f"{reporting}.metrics", b"", timeout=2)).data.decode()

    assert 'qt_breaker_state{breaker="wallet"} 2.0' in metrics


async def test_qt_services_lists_the_breakers(nc: Client, reporting: str) -> None:
    instances = [i for i in await discover(nc) if (i.get("stats") or {}).get("name") == reporting]

    console = Console(record=True, width=200)
    console.print(render.services(instances))
    shown = console.export_text()

    assert f"{reporting}.ask" in shown
    assert any(reporting in line and "wallet" in line and "open" in line for line in shown.splitlines())
