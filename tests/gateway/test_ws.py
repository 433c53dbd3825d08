"""`/v1/ws`: a client replaying snapshot + updates holds the engine's book; auth, channels and limits."""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import time
import zlib
from typing import Any

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from contracts.clearing import PlaceOrder
from contracts.errors import QtError
from tests.clearing.platform import Platform, clearing, fund, place
from tests.gateway.harness import GatewayProcess, new_account
from tests.polling import eventually

SYMBOL = "ETH-USD"  # no other gateway test trades it


def units(text: str) -> int:
    """A fixed-scale decimal string as integer units (what the checksum is computed on)."""
    return int(text.replace(".", ""))


class BookClient:
    """A WebSocket client that keeps an L2 book from snapshot + updates and checks every step."""

    def __init__(self) -> None:
        self.bids: dict[str, str] = {}
        self.asks: dict[str, str] = {}
        self.seq = -1
        self.snapshots = 0
        self.updates = 0

    def on(self, frame: dict[str, Any]) -> None:
        if frame.get("type") == "snapshot":
            self.bids = {p: q for p, q in frame["bids"]}
            self.asks = {p: q for p, q in frame["asks"]}
            self.seq = frame["seq"]
            self.snapshots += 1
        elif frame.get("type") == "update":
            assert frame["prev_seq"] == self.seq, ("sequence gap", frame["prev_seq"], self.seq)
            for side, levels in ((self.bids, frame["bids"]), (self.asks, frame["asks"])):
                for price, qty in levels:
                    if units(qty) == 0:
                        side.pop(price, None)
                    else:
                        side[price] = qty
            self.seq = frame["seq"]
            self.updates += 1
        else:
            return
        assert self.checksum() == frame["checksum"], "checksum mismatch"

    def sorted_levels(self) -> tuple[list[list[str]], list[list[str]]]:
        bids = sorted(self.bids.items(), key=lambda kv: -units(kv[0]))
        asks = sorted(self.asks.items(), key=lambda kv: units(kv[0]))
        return [list(b) for b in bids], [list(a) for a in asks]

    def checksum(self) -> int:
        bids, asks = self.sorted_levels()
        text = "".join(f"{units(p)}{units(q)}" for p, q in asks[:10]) + "".join(
            f"{units(p)}{units(q)}" for p, q in bids[:10])
        return zlib.crc32(text.encode("ascii"))


def ws_url(gateway: GatewayProcess, token: str) -> str:
    return gateway.url.replace("http", "ws", 1) + f"/v1/ws?token={token}"


@pytest.mark.slow
async def test_a_replayed_book_equals_the_engines_after_1000_random_orders(
    platform: Platform, gateway: GatewayProcess, client: httpx.AsyncClient
) -> None:
    traders = [new_account("ws") for _ in range(4)]
    for trader in traders:
        await fund(platform.nc, trader, USD=100_000_000, ETH=100_000_000_000)
    rng = random.Random(7)
    book = BookClient()
    placed: list[tuple[str, str]] = []
    async with websockets.connect(ws_url(gateway, gateway.token(traders[0])), open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "authenticated"
        await ws.send(json.dumps({"op": "subscribe", "channel": f"book.{SYMBOL}"}))

        async def reader() -> None:
            async for raw in ws:
                book.on(json.loads(raw))

        reading = asyncio.create_task(reader())
        queue = list(range(1000))

        async def trader_loop() -> None:
            while queue:
                i = queue.pop()
                account = rng.choice(traders)
                body = {"account": account, "instrument": SYMBOL, "side": rng.choice(["BUY", "SELL"]),
                        "price": f"{3450 + rng.randint(-20, 20) / 10:.2f}", "qty": f"0.0{rng.randint(1, 5)}",
                        "tif": rng.choice(["GTC", "GTC", "GTC", "IOC"]), "saga_id": f"ws-{account}-{i}"}
                PlaceOrder.model_validate(body, context={"wire": "json"})
                out = await place(platform.nc, timeout=60, **body)
                if out["order_status"] in ("new", "partially_filled"):
                    placed.append((account, out["order_id"]))

        await asyncio.gather(*(trader_loop() for _ in range(8)))
        async def engine_book() -> dict[str, Any]:
            return dict((await client.get(f"/v1/markets/{SYMBOL}/book", params={"depth": 500})).json())

        # the last updates may still be on their way
        engine = await eventually(engine_book, lambda e: e["seq"] == book.seq, every_s=0.1,
                                  what="the client's book at the engine's sequence")
        reading.cancel()
    assert book.snapshots == 1 and book.updates > 100
    assert engine["seq"] == book.seq
    assert book.sorted_levels() == (engine["bids"], engine["asks"])
    assert book.checksum() == engine["checksum"]
    for account, order_id in placed:  # leave the shared platform's book empty again
        with contextlib.suppress(QtError):  # filled since: nothing to cancel
            await clearing(platform.nc, "cancel_order", account=account, order_id=order_id)


async def test_ws_refuses_a_missing_or_bad_first_frame_token_with_4401(gateway: GatewayProcess) -> None:
    for first in ({"op": "auth", "token": "garbage"}, {"op": "subscribe", "channel": "book.AAPL"}):
        async with websockets.connect(gateway.url.replace("http", "ws", 1) + "/v1/ws", open_timeout=10) as ws:
            await ws.send(json.dumps(first))
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await asyncio.wait_for(ws.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4401


async def test_ws_refuses_a_bad_query_token_before_the_upgrade(gateway: GatewayProcess) -> None:
    expired = gateway.token(new_account("ws"), now=time.time() - 7200)
    for token in ("not-a-token", expired):
        with pytest.raises(InvalidStatus) as denied:
            await websockets.connect(ws_url(gateway, token), open_timeout=10)
        response = denied.value.response
        assert response.status_code == 401 and response.headers["Content-Type"] == "application/problem+json"
        assert json.loads(response.body)["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'


async def test_unknown_channels_and_bad_frames_get_errors_then_a_close(gateway: GatewayProcess) -> None:
    async with websockets.connect(ws_url(gateway, gateway.token(new_account("ws"))), open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "authenticated"
        await ws.send(json.dumps({"op": "subscribe", "channel": "book.DOGE"}))
        assert json.loads(await ws.recv())["code"] == "unknown_channel"
        await ws.send(json.dumps({"op": "subscribe", "channel": "nonsense"}))
        assert json.loads(await ws.recv())["code"] == "unknown_channel"
        await ws.send("{not json")
        assert json.loads(await ws.recv())["code"] == "bad_payload"
        await ws.send(json.dumps({"op": "subscribe", "channel": "book.AAPL", "extra": 1}))
        assert json.loads(await ws.recv())["code"] == "validation_error"
        await ws.send(json.dumps({"op": "ping", "id": 7}))
        assert json.loads(await ws.recv()) == {"type": "pong", "id": 7}
        with pytest.raises(ConnectionClosed) as closed:
            for _ in range(10):
                await ws.send("{bad")
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4400


async def test_a_flooding_client_is_closed_and_the_gateway_keeps_serving(
    gateway: GatewayProcess, client: httpx.AsyncClient
) -> None:
    async with websockets.connect(ws_url(gateway, gateway.token(new_account("ws"))), open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "authenticated"
        with pytest.raises(ConnectionClosed) as closed:
            for i in range(500):
                await ws.send(json.dumps({"op": "ping", "id": i}))
            while True:
                await asyncio.wait_for(ws.recv(), 10)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4429
    assert (await client.get("/health")).status_code == 200
