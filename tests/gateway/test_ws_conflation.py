"""Book channels conflate: a subscriber that stops reading gets one snapshot of the engine's book (not a
backlog), a few updates behind one update spanning them, continues from its seq, and every other subscriber
keeps getting each update; frames are encoded once and shared by all subscribers."""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

import httpx

from contracts.errors import QtError
from contracts.subjects import matching_subject
from gateway.ws_hub import CATCH_UP, Hub, Subscriber
from mesh.rpc import call
from tests.clearing.platform import Platform, clearing, fund, place
from tests.gateway.harness import GatewayProcess, new_account
from tests.gateway.test_ws import BookClient
from tests.polling import eventually

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
    return await eventually(lambda: engine_book(client), lambda engine: hub.channels[CHANNEL].seq == engine["seq"],
                            timeout_s=20, what="the hub's channel at the engine's sequence")


def assert_equal(book: BookClient, engine: dict[str, Any]) -> None:
    assert book.seq == engine["seq"]
    assert book.sorted_levels() == (engine["bids"], engine["asks"])
    assert book.checksum() == engine["checksum"]


class Live:
    """A subscriber whose frames are read as soon as they are ready, each kept by seq."""

    def __init__(self, who: Subscriber) -> None:
        self.who = who
        self.book = BookClient()
        self.frames: dict[int, str] = {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        while True:
            for text in await self.who.take():
                frame = json.loads(text)
                self.book.on(frame)
                self.frames[frame["seq"]] = text

    async def reached(self, seq: int) -> None:
        async with asyncio.timeout(20):
            while self.book.seq != seq:
                await asyncio.sleep(0.05)


async def test_a_paused_subscriber_gets_one_snapshot_then_updates_and_the_others_every_update(
    platform: Platform, gateway: GatewayProcess, client: httpx.AsyncClient
) -> None:
    trader = new_account("wsc")
    await fund(platform.nc, trader, USD=10_000_000)
    hub = Hub(platform.nc, lambda symbol: call(platform.nc, matching_subject(symbol, "book"),
                                               {"instrument": symbol, "depth": 500}, timeout=5))
    paused, paused_too = Subscriber("paused"), Subscriber("paused-too")
    for who in (live_who := Subscriber("live"), paused, paused_too):
        assert await hub.subscribe(who, CHANNEL)
        hub.follow(who, CHANNEL)
    live, paused_book = Live(live_who), BookClient()
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
        # a few updates behind, it gets them as one update spanning them, from its own seq
        for order_id in placed[:3]:
            await clearing(platform.nc, "cancel_order", account=trader, order_id=order_id)
        engine = await settled(hub, client)
        spanned, spanned_too = await paused.take(), await paused_too.take()
        assert len(spanned) == 1 and spanned_too[0] is spanned[0], "a span is encoded once for its seq"
        frame = json.loads(spanned[0])
        assert frame["type"] == "update" and frame["prev_seq"] == paused_book.seq and frame["seq"] == engine["seq"]
        paused_book.on(frame)  # checks prev_seq and the checksum
        assert paused_book.snapshots == 2
        assert_equal(paused_book, engine)
        # one update behind, it gets the very frame every subscriber got
        await clearing(platform.nc, "cancel_order", account=trader, order_id=placed[3])
        engine = await settled(hub, client)
        (text,) = await paused.take()
        await live.reached(engine["seq"])
        assert text is live.frames[engine["seq"]], "an update is encoded once for every subscriber"
        paused_book.on(json.loads(text))
        assert_equal(paused_book, engine)
        assert live.book.snapshots == 1, "the reader never needed a snapshot: it lost nothing"
        assert_equal(live.book, engine)
    finally:
        live.task.cancel()
        for who in (live_who, paused, paused_too):
            await hub.leave(who)
        for order_id in placed:
            with contextlib.suppress(QtError):  # cancelled above already
                await clearing(platform.nc, "cancel_order", account=trader, order_id=order_id)
    assert hub.channels == {}
