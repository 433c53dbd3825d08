"""Trace context: the caller's `traceparent` is continued on NATS and echoed; without one a trace starts."""

from __future__ import annotations

import asyncio
import re

import httpx

from contracts.subjects import wallet_subject
from mesh.rpc import subscribed
from tests.clearing.platform import Platform
from tests.gateway.harness import GatewayProcess, bearer, new_account

TRACEPARENT = re.compile(r"^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$")
CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_callers_trace_is_continued_on_nats_and_echoed(client: httpx.AsyncClient,
                                                                 gateway: GatewayProcess,
                                                                 platform: Platform) -> None:
    account = new_account("traced")
    seen: asyncio.Queue[dict[str, str]] = asyncio.Queue()

    async def watch(msg: object) -> None:
        headers = getattr(msg, "headers", None) or {}
        if account.encode() in getattr(msg, "data", b""):
            await seen.put(dict(headers))

    # A plain subscriber gets a copy of each request; the wallet (queue group) still answers it.
    sub = await platform.nc.subscribe(wallet_subject("balance", 0), cb=watch)
    try:
        await subscribed(platform.nc)
        answered = await client.get(f"/v1/accounts/{account}/balances",
                                    headers=bearer(gateway.token(account), traceparent=CALLER))
        forwarded = await asyncio.wait_for(seen.get(), timeout=10)
    finally:
        await sub.unsubscribe()
    echoed = TRACEPARENT.match(answered.headers["traceparent"])
    assert echoed and echoed.group(1) == "4bf92f3577b34da6a3ce929d0e0e4736"
    assert echoed.group(2) != "00f067aa0ba902b7"  # the gateway's own hop
    assert forwarded["traceparent"] == answered.headers["traceparent"]


async def test_a_trace_starts_when_none_or_a_broken_one_comes(client: httpx.AsyncClient) -> None:
    started = await client.get("/v1/markets")
    assert TRACEPARENT.match(started.headers["traceparent"])
    broken = await client.get("/v1/markets", headers={"traceparent": "00-zz-yy-01"})
    assert TRACEPARENT.match(broken.headers["traceparent"])
    assert broken.headers["traceparent"] != started.headers["traceparent"]


async def test_errors_carry_the_trace_too(client: httpx.AsyncClient) -> None:
    refused = await client.get("/v1/accounts/alice/balances", headers={"traceparent": CALLER})
    assert refused.status_code == 401
    assert refused.headers["traceparent"].split("-")[1] == "4bf92f3577b34da6a3ce929d0e0e4736"
