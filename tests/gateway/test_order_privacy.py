"""A trade between alice and bob: each sees only its own side of the fill, over HTTP and on the WS
`orders` channel (its order id, price, qty, fee, maker/taker), never the other's account or order."""

from __future__ import annotations

import contextlib
import json

import httpx
import websockets

from contracts.errors import QtError
from tests.clearing.platform import Platform, clearing, fund
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key
from tests.gateway.test_ws_channels import frames_until


async def test_each_side_of_a_trade_sees_only_its_own_side(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                           platform: Platform) -> None:
    alice, bob = new_account("alice"), new_account("bob")
    await fund(platform.nc, alice, USD=10_000_000)
    await fund(platform.nc, bob, MSFT=100_000)
    alice_token, bob_token = gateway.token(alice), gateway.token(bob)
    rest = await client.post("/v1/orders", headers=bearer(bob_token, new_key()),
                             json={"instrument": "MSFT", "side": "SELL", "price": "250.00", "qty": "2.0000"})
    assert rest.status_code == 201, rest.text
    bob_order = rest.json()["order_id"]

    try:
        url = gateway.url.replace("http", "ws", 1)
        async with websockets.connect(f"{url}/v1/ws?token={alice_token}", open_timeout=10) as alice_ws, \
                websockets.connect(f"{url}/v1/ws?token={bob_token}", open_timeout=10) as bob_ws:
            for ws in (alice_ws, bob_ws):
                await ws.recv()  # authenticated
                await ws.send(json.dumps({"op": "subscribe", "channel": "orders"}))
                await frames_until(ws, lambda f: f.get("type") == "subscribed")
            buy = await client.post("/v1/orders", headers=bearer(alice_token, new_key()),
                                    json={"instrument": "MSFT", "side": "BUY", "price": "250.00", "qty": "1.0000"})
            assert buy.status_code == 201, buy.text
            alice_order = buy.json()["order_id"]
            alice_frame = await frames_until(alice_ws, lambda f: f.get("channel") == "orders"
                                             and f["data"]["kind"] == "fill")
            bob_frame = await frames_until(bob_ws, lambda f: f.get("channel") == "orders"
                                           and f["data"]["kind"] == "fill")

        shown = await client.get(f"/v1/orders/{alice_order}", headers=bearer(alice_token))
        listed = await client.get("/v1/orders", headers=bearer(alice_token))
        detail = await client.get(f"/v1/sagas/{alice_order}", headers=bearer(alice_token))
        for seen in (buy.text, shown.text, listed.text, detail.text, json.dumps(alice_frame)):
            assert bob not in seen and bob_order not in seen, seen
        [fill] = shown.json()["fills"]
        assert fill["order_id"] == alice_order and fill["liquidity"] == "taker" and fill["side"] == "BUY"
        assert fill["price"] == "250.00" and fill["qty"] == "1.0000" and fill["fee"] == "0.12"
        assert fill["fee_asset"] == "USD" and not fill["busted"]
        assert shown.json()["fee"] == "0.12" and buy.json()["fills"] == [fill]
        assert alice_frame["data"]["order_id"] == alice_order and alice_frame["data"]["liquidity"] == "taker"
        assert alice_frame["data"]["trade_id"] == fill["trade_id"]

        cancelled = await client.delete(f"/v1/orders/{bob_order}", headers=bearer(bob_token, new_key()))
        bob_shown = await client.get(f"/v1/orders/{bob_order}", headers=bearer(bob_token))
        for seen in (cancelled.text, bob_shown.text, json.dumps(bob_frame)):
            assert alice not in seen and alice_order not in seen, seen
        [maker_fill] = bob_shown.json()["fills"]
        assert maker_fill["liquidity"] == "maker" and maker_fill["side"] == "SELL" and maker_fill["fee"] == "0.12"
        assert bob_frame["data"]["order_id"] == bob_order and bob_frame["data"]["liquidity"] == "maker"
        assert bob_shown.json()["order_status"] == "cancelled" and bob_shown.json()["filled"] == "1.0000"
    finally:  # the book is shared with the other gateway tests: leave nothing resting
        with contextlib.suppress(QtError):
            await clearing(platform.nc, "cancel_order", account=bob, order_id=bob_order)


async def test_the_documented_order_replies_carry_only_the_clients_side(client: httpx.AsyncClient) -> None:
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    fill = schemas["ClientFill"]["properties"]
    assert not {"maker_account", "taker_account", "maker_order_id", "maker_remaining"} & fill.keys()
    assert fill["fee"]["type"] == "string" and fill["price"]["type"] == "string"
    for name in ("ClientSagaView", "ClientOrderResult"):
        assert schemas[name]["properties"]["fills"]["items"] == {"$ref": "#/components/schemas/ClientFill"}
    assert schemas["ClientSagaView"]["properties"]["fee"]["type"] == "string"
