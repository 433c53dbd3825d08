"""Book channels conflate: a subscriber that stops reading gets one snapshot of the engine's book (not a
backlog), continues from its seq, and every other subscriber keeps getting each update; frames are encoded
once and shared by all subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from contracts.errors import QtError
from contracts.rpc import call
from contracts.subjects import matching_subject
from gateway.ws_hub import CATCH_UP, Hub, Subscriber
from tests.clearing.platform import Platform, clearing, fund, place
from tests.gateway.harness import GatewayProcess, new_account
from tests.gateway.test_ws import BookClient

SYMBOL = "BTC-USD"
CHANNEL = f"book.{SYMBOL}"


async def engine_book(client: httpx.AsyncClient) -> dict[str, Any]:
    """The engine's whole book as the HTTP API shows it (decimal strings)."""
    reply = await client.get(f"/v1/markets/{SYMBOL}/book", params={"depth": 500})
    assert reply.status_code == 200, reply.text
    body: dict[str, Any] = reply.json()
    return body


async def settled(hub: Hub, client: httpx.AsyncClient) -> dict[str, Any]:
    """The engine's book once the hub's channel has caught up with it."""
    async with asyncio.timeout(20):
        while True:
            engine = await engine_book(client)
            if hub.channels[CHANNEL].seq == engine["seq"]:
                return engine
            await asyncio.sleep(0.05)


def assert_equal(book: BookClient, engine: dict[str, Any]) -> None:
    assert book.seq == engine["seq"]
    assert book.sorted_levels() == (engine["bids"], engine["asks"])
    assert book.checksum() == engine["checksum"]


async def test_a_paused_subscriber_gets_one_snapshot_then_updates_and_the_others_every_update(
    platform: Platform, gateway: GatewayProcess, client: httpx.AsyncClient
) -> None:
    trader = new_account("wsc")
    await fund(platform.nc, trader, USD=10_000_000)
    hub = Hub(platform.nc, lambda symbol: call(platform.nc, matching_subject("book"),
                                               {"instrument": symbol, "depth": 500}, timeout=5))
    live, paused, paused_too = Subscriber("live"), Subscriber("paused"), Subscriber("paused-too")
    for who in (live, paused, paused_too):
        assert await hub.subscribe(who, CHANNEL)
        hub.follow(who, CHANNEL)
    live_book, paused_book = BookClient(), BookClient()
    live_frames: dict[int, str] = {}

    async def read_live() -> None:
        while True:
            for text in await live.take():
                frame = json.loads(text)
                live_book.on(frame)
                live_frames[frame["seq"]] = text

    reading = asyncio.create_task(read_live())
    placed: list[str] = []
    try:
        first = await paused.take()
        assert [json.loads(t)["type"] for t in first] == ["snapshot"]
        paused_book.on(json.loads(first[0]))
        assert await paused_too.take() == first  # both start from the same snapshot
        # more than CATCH_UP book changes while two subscribers read nothing
        for k in range(3 * CATCH_UP):
            out = await place(platform.nc, account=trader, instrument=SYMBOL, side="BUY", price=f"{50_000 - k}.00",
                              qty="0.00010000", saga_id=f"wsc-{trader}-{k}")
            placed.append(out["order_id"])
        engine = await settled(hub, client)
        assert len(hub.channels[CHANNEL].recent) <= CATCH_UP  # what the hub keeps for laggards is bounded
        caught_up, caught_up_too = await paused.take(), await paused_too.take()
        assert len(caught_up) == 1 and json.loads(caught_up[0])["type"] == "snapshot"
        assert caught_up_too[0] is caught_up[0], "a snapshot is encoded once for every lagging subscriber"
        paused_book.on(json.loads(caught_up[0]))
        assert_equal(paused_book, engine)
        # from the snapshot's seq the paused subscriber continues with plain updates (prev_seq checked)
        for order_id in placed[:3]:
            await clearing(platform.nc, "cancel_order", account=trader, order_id=order_id)
        engine = await settled(hub, client)
        updates = await paused.take()
        for text in updates:
            frame = json.loads(text)
            assert frame["type"] == "update"
            assert text is live_frames.get(frame["seq"], text), "an update is encoded once for every subscriber"
            paused_book.on(frame)
        assert updates and paused_book.snapshots == 2
        assert_equal(paused_book, engine)
        async with asyncio.timeout(20):
            while live_book.seq != engine["seq"]:
                await asyncio.sleep(0.05)
        assert live_book.snapshots == 1 and live_book.updates >= 3 * CATCH_UP, "the reader never lost an update"
        assert_equal(live_book, engine)
    finally:
        reading.cancel()
        for who in (live, paused, paused_too):
            await hub.leave(who)
        for order_id in placed:
            with contextlib.suppress(QtError):  # cancelled above already
                await clearing(platform.nc, "cancel_order", account=trader, order_id=order_id)
    assert hub.channels == {}
