"""Without a tracer provider the nodes record no span yet forward the caller's `traceparent` verbatim on
every message one order causes: wallet and matching requests, the ORDERS journal, EXEC and TRADES."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.msg import Msg

from contracts.codec import Wire
from contracts.subjects import clearing_subject, exec_subject, orders_subject, trades_subject
from mesh.rpc import call, subscribed
from tests.clearing.platform import Platform, fund, place

CALLER = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_the_callers_traceparent_rides_every_request_and_stream_message_of_its_order(shared: Platform) -> None:
    nc = shared.nc
    buyer, seller = f"tbuyer-{uuid.uuid4().hex[:8]}", f"tseller-{uuid.uuid4().hex[:8]}"
    await fund(nc, buyer, USD=1_000_000)
    await fund(nc, seller, NVDA=10_000)
    await place(nc, account=seller, instrument="NVDA", side="SELL", price="825.50", qty="1.0000")
    seen: dict[str, list[Msg]] = {}

    async def keep(msg: Msg) -> None:
        if buyer.encode() in msg.data:
            seen.setdefault(msg.subject.split(".")[0], []).append(msg)

    # plain subscribers get a copy of each request and stream message; the services still answer
    subs = [await nc.subscribe(subject, cb=keep) for subject in (
        "wallet.*.*", "matching.*.submit", orders_subject("NVDA"), exec_subject("NVDA"), trades_subject("NVDA"))]
    try:
        await subscribed(nc)
        buy = await call(nc, clearing_subject("place_order"), {
            "account": buyer, "instrument": "NVDA", "side": "BUY", "price": "825.50", "qty": "1.0000",
        }, wire=Wire.JSON, timeout=15, headers={"traceparent": CALLER})
        assert buy["order_status"] == "filled", buy
        for _ in range(200):  # EXEC and TRADES copies may land just after the reply
            if {"wallet", "matching", "orders", "exec", "trades"} <= seen.keys():
                break
            await asyncio.sleep(0.025)
    finally:
        for sub in subs:
            await sub.unsubscribe()

    assert {"wallet", "matching", "orders", "exec", "trades"} <= seen.keys(), sorted(seen)
    for kind, msgs in seen.items():
        for msg in msgs:
            assert (msg.headers or {}).get("traceparent") == CALLER, (kind, msg.subject, msg.headers)
