"""WebSocket channels beyond the book: trades, private orders and balances; a slow subscriber is cut off."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import msgpack
import nats
import pytest
import websockets
from nats.aio.client import Client

from contracts.credentials import nkey_seed_path
from contracts.errors import QtError
from contracts.gateway import Role
from contracts.subjects import exec_msg_id, exec_subject
from gateway.ws_hub import SEND_QUEUE, Hub, Subscriber
from tests.clearing.platform import Platform, clearing, fund
from tests.conftest import wait_for_service
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key
from tooling.natsserver import NatsServer

#: Subscribe-publish races run: one lost event in any of them fails the test.
ROUNDS = 200


@pytest.fixture(scope="module")
async def market_data(platform: Platform) -> AsyncIterator[None]:
    """The market data node on the shared platform (unless a module before started one)."""
    try:
        await platform.nc.request("$SRV.PING.marketdata", b"", timeout=0.5)
    except Exception:
        await platform.start("market_data", wait=False)
        await wait_for_service(platform.nc, "marketdata", timeout_s=30)
    yield


async def frames_until(ws: Any, want: Any, timeout_s: float = 20.0) -> dict[str, Any]:
    """Read frames until one satisfies `want` (heartbeats and other channels are skipped)."""
    async with asyncio.timeout(timeout_s):
        while True:
            frame = json.loads(await ws.recv())
            if want(frame):
                return frame


async def test_private_channels_and_the_trades_channel_carry_the_accounts_own_events(
    platform: Platform, gateway: GatewayProcess, client: httpx.AsyncClient, market_data: None
) -> None:
    buyer, seller = new_account("wsb"), new_account("wss")
    await fund(platform.nc, seller, ETH=1_000_000_000)
    token = gateway.token(buyer)
    url = gateway.url.replace("http", "ws", 1) + f"/v1/ws?token={token}"
    async with websockets.connect(url, open_timeout=10) as ws:
        assert json.loads(await ws.recv()) == {"type": "authenticated", "account": buyer}
        for channel in ("balances", "orders", "trades.ETH-USD"):
            await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
            assert (await frames_until(ws, lambda f: f.get("type") in ("subscribed", "error")))["type"] == "subscribed"

        deposit = await client.post(f"/v1/accounts/{buyer}/deposits", json={"asset": "USD", "amount": "5000.00"},
                                    headers=bearer(gateway.token("operator", Role.OPS), new_key()))
        assert deposit.status_code in (200, 201), deposit.text
        event = await frames_until(ws, lambda f: f.get("channel") == "balances")
        assert event["data"]["account"] == buyer and event["data"]["amount"] == "5000.00"

        sell = await clearing(platform.nc, "place_order", account=seller, instrument="ETH-USD", side="SELL",
                              price="3000.00", qty="0.5000")
        try:
            buy = await client.post("/v1/orders", json={"instrument": "ETH-USD", "side": "BUY", "price": "3000.00",
                                                        "qty": "0.5000"}, headers=bearer(token, new_key()))
            assert buy.status_code == 201 and buy.json()["order_status"] == "filled", buy.text
            mine = await frames_until(ws, lambda f: f.get("channel") == "orders" and f["data"]["kind"] == "fill")
            assert mine["data"]["order_id"] == buy.json()["order_id"] and mine["data"]["liquidity"] == "taker"
            trade_id = buy.json()["fills"][0]["trade_id"]
            tape = await frames_until(ws, lambda f: f.get("channel") == "trades.ETH-USD"
                                      and f["data"]["trade_id"] == trade_id)
            assert tape["data"]["price"] == "3000.00" and tape["data"]["kind"] == "trade"
        finally:
            with contextlib.suppress(QtError):
                await clearing(platform.nc, "cancel_order", account=seller, order_id=sell["order_id"])


async def test_a_subscriber_that_stops_reading_is_dropped_and_the_others_get_everything(nc: Client) -> None:
    async def no_snapshot(symbol: str) -> dict[str, Any]:
        raise AssertionError("no book here")

    hub = Hub(nc, no_snapshot)
    slow, fast = Subscriber("slow"), Subscriber("fast")
    assert await hub.subscribe(slow, "trades.MSFT") and await hub.subscribe(fast, "trades.MSFT")
    received: list[str] = []

    async def drain() -> None:
        while len(received) < SEND_QUEUE + 50:
            received.extend(await fast.take())

    reader = asyncio.create_task(drain())
    # One burst larger than a send queue: nats.py hands the hub the whole backlog at once, and the
    # fast reader keeps up only because the hub lets it run every YIELD_EVERY messages.
    for n in range(SEND_QUEUE + 50):
        await nc.publish("md.trades.MSFT", json.dumps({"seq": n}).encode())
    await asyncio.wait_for(reader, 20)
    assert slow.closed.is_set()  # its queue filled: the session closes it (4408)
    assert [json.loads(r)["data"]["seq"] for r in received] == list(range(SEND_QUEUE + 50))
    await hub.leave(slow)
    await hub.leave(fast)
    assert hub.channels == {}


async def test_an_event_published_elsewhere_right_after_subscribe_returns_reaches_the_subscriber(
    nc: Client, nats_server: NatsServer
) -> None:
    async def no_snapshot(symbol: str) -> dict[str, Any]:
        raise AssertionError("no book here")

    hub = Hub(nc, no_snapshot)
    other = await nats.connect(nats_server.url, nkeys_seed=str(nkey_seed_path(nats_server.data_dir, "ops")))
    try:
        for n in range(ROUNDS):  # each round makes a fresh NATS subscription: the last subscriber left
            who = Subscriber(f"s{n}")
            assert await hub.subscribe(who, "trades.NVDA")
            await other.publish("md.trades.NVDA", json.dumps({"seq": n}).encode())
            frames = await asyncio.wait_for(who.take(), 5)
            assert [json.loads(f)["data"]["seq"] for f in frames] == [n]
            await hub.leave(who)
            assert hub.channels == {}
    finally:
        await other.close()


async def test_an_execution_report_sent_again_with_its_msg_id_reaches_the_orders_channel_once(nc: Client) -> None:
    async def no_snapshot(symbol: str) -> dict[str, Any]:
        raise AssertionError("no book here")

    hub = Hub(nc, no_snapshot)
    who = Subscriber("dedupe-acct")
    assert await hub.subscribe(who, "orders")

    def entry(*order_ids: str) -> bytes:
        """One journal entry's reports: the subscriber's cancels, with another account's between them."""
        reports = [{"kind": "cancelled", "account": who.account if order_id.startswith("d") else "someone-else",
                    "instrument": "BTC-USD", "order_id": order_id, "remaining": 1000} for order_id in order_ids]
        return msgpack.packb(reports)

    subject = exec_subject("BTC-USD")
    # a taking-over engine republishes what the old owner sent (same msg-id, same body): once to the client
    for order_ids, n in ((("d1", "x1", "d2"), 7), (("d1", "x1", "d2"), 7), (("x2",), 8), (("d3",), 9),
                         (("d3",), 9)):
        await nc.publish(subject, entry(*order_ids), headers={"Nats-Msg-Id": exec_msg_id("BTC-USD", n, 0)})
    frames: list[str] = []
    while len(frames) < 3:
        frames.extend(await asyncio.wait_for(who.take(), 5))
    # a report of the older layout (one message per report, the kind in the subject) still reaches it
    await nc.publish("exec.BTC-USD.cancelled", msgpack.packb(msgpack.unpackb(entry("d4"))[0]),
                     headers={"Nats-Msg-Id": "BTC-USD:10:0"})
    frames.extend(await asyncio.wait_for(who.take(), 5))  # d4 arrives after d3, with nothing between

    assert [json.loads(f)["data"]["order_id"] for f in frames] == ["d1", "d2", "d3", "d4"]
    await hub.leave(who)


async def test_every_orders_channel_shares_one_exec_subscription_and_gets_its_own_side(nc: Client) -> None:
    async def no_snapshot(symbol: str) -> dict[str, Any]:
        raise AssertionError("no book here")

    hub = Hub(nc, no_snapshot)
    maker, taker, idle = Subscriber("share-maker"), Subscriber("share-taker"), Subscriber("share-idle")
    before = len(nc._subs)
    for who in (maker, taker, idle):
        assert await hub.subscribe(who, "orders")
    assert hub.exec_sub is not None and len(nc._subs) == before + 1  # one subscription, not one per account
    fill = {"kind": "fill", "instrument": "BTC-USD", "orders_seq": 5, "order_id": "t1", "trade_id": "BTC-USD-1",
            "price": 6_750_000, "qty": 10_000, "maker_order_id": "m1", "taker_order_id": "t1",
            "maker_account": maker.account, "taker_account": taker.account, "taker_side": "BUY",
            "maker_remaining": 0, "maker_executed_value": 675_000, "taker_executed_value": 675_000}
    accepted = {"kind": "accepted", "instrument": "BTC-USD", "orders_seq": 5, "order_id": "t2",
                "account": taker.account}
    await nc.publish(exec_subject("BTC-USD"), msgpack.packb([fill, accepted]),
                     headers={"Nats-Msg-Id": exec_msg_id("BTC-USD", 5, 0)})
    got: dict[str, list[dict[str, Any]]] = {}
    for who, count in ((maker, 1), (taker, 2)):
        frames: list[str] = []
        while len(frames) < count:
            frames.extend(await asyncio.wait_for(who.take(), 5))
        got[who.account] = [json.loads(frame)["data"] for frame in frames]
    assert [(d["kind"], d["order_id"]) for d in got[maker.account]] == [("fill", "m1")]
    assert [(d["kind"], d["order_id"]) for d in got[taker.account]] == [("fill", "t1"), ("accepted", "t2")]
    with pytest.raises(TimeoutError):  # nothing of it concerns the third account
        await asyncio.wait_for(idle.take(), 0.3)
    for who in (maker, taker):
        await hub.leave(who)
    assert hub.exec_sub is not None  # the third still listens
    await hub.leave(idle)
    assert hub.exec_sub is None and hub.channels == {} and len(nc._subs) == before
