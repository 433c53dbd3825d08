"""Orders through the gateway: place (the saga), cancel, show, list your own, sagas, the book."""

from __future__ import annotations

import asyncio

import httpx
from nats.aio.msg import Msg

from contracts.codec import Wire, sniff
from contracts.gateway import Role
from contracts.instruments import INSTRUMENTS
from contracts.subjects import clearing_subject, wallet_group, wallet_subject
from mesh.rpc import subscribed
from tests.clearing.platform import Platform, balances, fund
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem


async def test_a_crossing_order_settles_both_sides(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                   platform: Platform) -> None:
    buyer, seller = new_account("buyer"), new_account("seller")
    await fund(platform.nc, buyer, USD=1_000_000)
    await fund(platform.nc, seller, NVDA=10_000)
    sell = await client.post("/v1/orders", headers=bearer(gateway.token(seller), new_key()),
                             json={"instrument": "NVDA", "side": "SELL", "price": "825.50", "qty": "1.0000"})
    assert sell.status_code == 201, sell.text
    assert sell.json()["order_status"] == "new"
    assert sell.headers["location"] == f"/v1/orders/{sell.json()['order_id']}"

    buy = await client.post("/v1/orders", headers=bearer(gateway.token(buyer), new_key()),
                            json={"instrument": "NVDA", "side": "BUY", "price": "825.50", "qty": "1.0000"})
    assert buy.status_code == 201, buy.text
    assert buy.json()["status"] == "completed" and buy.json()["order_status"] == "filled"
    assert [f["price"] for f in buy.json()["fills"]] == ["825.50"]

    fee = 82_550 * 5 // 10_000
    assert await balances(platform.nc, buyer) == {"USD": (1_000_000 - 82_550 - fee, 0), "NVDA": (10_000, 0)}
    shown = await client.get(f"/v1/accounts/{seller}/balances", headers=bearer(gateway.token(seller)))
    assert shown.json()["balances"]["USD"]["available"] == f"{(82_550 - fee) / 100:.2f}"


async def test_cancel_releases_the_hold(client: httpx.AsyncClient, gateway: GatewayProcess,
                                        platform: Platform) -> None:
    account = new_account("canceller")
    token = gateway.token(account)
    await fund(platform.nc, account, USD=100_000)
    placed = await client.post("/v1/orders", headers=bearer(token, new_key()),
                               json={"instrument": "AAPL", "side": "BUY", "price": "100.00", "qty": "2.0000"})
    order_id = placed.json()["order_id"]
    assert (await balances(platform.nc, account))["USD"][1] > 0

    cancelled = await client.delete(f"/v1/orders/{order_id}", headers=bearer(token, new_key()))
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "cancelled"
    assert await balances(platform.nc, account) == {"USD": (100_000, 0)}


async def test_show_and_list_own_orders(client: httpx.AsyncClient, gateway: GatewayProcess,
                                        platform: Platform) -> None:
    account, other = new_account("lister"), new_account("other")
    await fund(platform.nc, account, USD=100_000)
    token = gateway.token(account)
    placed = await client.post("/v1/orders", headers=bearer(token, new_key()),
                               json={"instrument": "AAPL", "side": "BUY", "price": "90.00", "qty": "1.0000"})
    order_id = placed.json()["order_id"]

    shown = await client.get(f"/v1/orders/{order_id}", headers=bearer(token))
    assert shown.status_code == 200, shown.text
    assert shown.json()["order_id"] == order_id and shown.json()["remaining"] == "1.0000"
    listed = await client.get("/v1/orders", headers=bearer(token))
    assert [s["order_id"] for s in listed.json()["sagas"]] == [order_id]

    problem(await client.get(f"/v1/orders/{order_id}", headers=bearer(gateway.token(other))), 404, "unknown_order")
    assert (await client.get("/v1/orders", headers=bearer(gateway.token(other)))).json()["sagas"] == []
    problem(await client.delete(f"/v1/orders/{order_id}", headers=bearer(gateway.token(other), new_key())),
            404, "unknown_order")


async def test_saga_detail_is_the_owners(client: httpx.AsyncClient, gateway: GatewayProcess,
                                         platform: Platform, ops_token: str) -> None:
    account = new_account("sagas")
    await fund(platform.nc, account, USD=100_000)
    token = gateway.token(account)
    placed = await client.post("/v1/orders", headers=bearer(ops_token, new_key()),  # fault drills are ops'
                               json={"account": account, "instrument": "AAPL", "side": "BUY", "price": "80.00",
                                     "qty": "1.0000", "inject_failure_step": "process_fills"})
    assert placed.json()["status"] == "compensated"
    saga_id = placed.json()["saga_id"]

    detail = await client.get(f"/v1/sagas/{saga_id}", headers=bearer(token))
    assert [s["name"] for s in detail.json()["steps"]] == ["reserve_funds", "submit_order", "process_fills",
                                                            "settle"]
    problem(await client.get(f"/v1/sagas/{saga_id}", headers=bearer(gateway.token(new_account("x")))),
            404, "not_found")
    assert (await client.get(f"/v1/sagas/{saga_id}", headers=bearer(ops_token))).status_code == 200
    listed = await client.get("/v1/sagas", params={"status": "compensated", "account": account},
                              headers=bearer(ops_token))
    assert [s["saga_id"] for s in listed.json()["sagas"]] == [saga_id]


async def test_book_depth(client: httpx.AsyncClient, gateway: GatewayProcess, platform: Platform) -> None:
    account = new_account("maker")
    await fund(platform.nc, account, MSFT=100_000)
    token = gateway.token(account)
    for price in ("500.00", "501.00", "502.00"):
        await client.post("/v1/orders", headers=bearer(token, new_key()),
                          json={"instrument": "MSFT", "side": "SELL", "price": price, "qty": "1.0000"})
    book = await client.get("/v1/markets/MSFT/book", params={"depth": 2})
    assert book.status_code == 200, book.text
    assert book.json()["asks"][:2] == [["500.00", "1.0000"], ["501.00", "1.0000"]]
    assert len(book.json()["asks"]) == 2


async def test_instruments_are_listed(client: httpx.AsyncClient) -> None:
    listed = await client.get("/v1/markets")
    symbols = {i["instrument"]: i for i in listed.json()["instruments"]}
    assert symbols["BTC-USD"]["min_qty"] == "0.00001000" and symbols["AAPL"]["tick"] == "0.01"
    problem(await client.get("/v1/markets/DOGE-USD"), 422, "unknown_instrument")
    # refused before any subject is built from it (`matching.<instrument>.book` exists only for listed ones)
    problem(await client.get("/v1/markets/DOGE-USD/book"), 422, "unknown_instrument")


async def test_services_show_stats_and_breakers(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                ops_token: str) -> None:
    found = await client.get("/v1/services", headers=bearer(ops_token))
    assert found.status_code == 200, found.text
    names = {s["name"] for s in found.json()["services"]}
    assert {"wallet", "matching", "clearing"} <= names
    clearing = next(s for s in found.json()["services"] if s["name"] == "clearing")
    # one breaker per wallet partition and one per instrument
    assert set(clearing["breakers"]) == {wallet_group(0), *(f"matching.{symbol}" for symbol in INSTRUMENTS)}
    problem(await client.get("/v1/services", headers=bearer(gateway.token("someone", Role.TRADER))),
            403, "forbidden")


async def test_orders_page_newest_first_with_their_current_status(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                                  platform: Platform) -> None:
    account, other = new_account("pages"), new_account("between")
    await fund(platform.nc, account, USD=100_000)
    await fund(platform.nc, other, USD=100_000)
    token = gateway.token(account)
    placed: list[str] = []
    theirs: list[str] = []
    for _ in range(3):
        for who, ids in ((account, placed), (other, theirs)):
            reply = await client.post("/v1/orders", headers=bearer(gateway.token(who), new_key()),
                                      json={"instrument": "AAPL", "side": "BUY", "price": "1.00", "qty": "1.0000"})
            ids.append(reply.json()["order_id"])
    cancelled = await client.delete(f"/v1/orders/{placed[0]}", headers=bearer(token, new_key()))
    assert cancelled.status_code == 200, cancelled.text

    first = (await client.get("/v1/orders", params={"limit": 2}, headers=bearer(token))).json()
    second = (await client.get("/v1/orders", params={"limit": 2, "cursor": first["next_cursor"]},
                               headers=bearer(token))).json()
    assert [s["order_id"] for s in first["sagas"] + second["sagas"]] == placed[::-1]
    assert second["next_cursor"] is None
    assert [s["order_status"] for s in second["sagas"]] == ["cancelled"]  # not the saga's frozen "new"
    problem(await client.get("/v1/orders", params={"cursor": "not a cursor"}, headers=bearer(token)),
            422, "validation_error")
    for who, ids in ((account, placed[1:]), (other, theirs)):
        for order_id in ids:
            await client.delete(f"/v1/orders/{order_id}", headers=bearer(gateway.token(who), new_key()))


async def test_the_gateway_speaks_msgpack_to_the_nodes_and_decimal_strings_to_clients(
        client: httpx.AsyncClient, gateway: GatewayProcess, platform: Platform) -> None:
    account = new_account("wire")
    token = gateway.token(account)
    seen: asyncio.Queue[tuple[str, bytes]] = asyncio.Queue()

    async def watch(msg: Msg) -> None:
        if account.encode() in msg.data:
            await seen.put((msg.subject, msg.data))

    # plain subscribers get a copy of each request; the nodes (queue groups) still answer them
    subs = [await platform.nc.subscribe(subject, cb=watch) for subject in
            (wallet_subject("deposit", 0), clearing_subject("place_order"), clearing_subject("cancel_order"))]
    try:
        await subscribed(platform.nc)
        deposit = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "1000.00"},
                                    headers=bearer(gateway.token("operator", Role.OPS), new_key()))
        assert deposit.status_code == 200, deposit.text
        assert deposit.json()["changes"][0]["available"] == "1000.00"
        placed = await client.post("/v1/orders", headers=bearer(token, new_key()),
                                   json={"instrument": "AAPL", "side": "BUY", "price": "10.00", "qty": "2.0000"})
        assert placed.status_code == 201, placed.text
        body = placed.json()
        assert (body["qty"], body["remaining"], body["filled"], body["hold_left"]) == ("2.0000", "2.0000", "0.0000",
                                                                                       "20.01")
        cancelled = await client.delete(f"/v1/orders/{body['order_id']}", headers=bearer(token, new_key()))
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled" and cancelled.json()["remaining"] == "0.0000"
        requests = [await asyncio.wait_for(seen.get(), timeout=10) for _ in range(3)]
    finally:
        for sub in subs:
            await sub.unsubscribe()
    assert [sniff(data) for _, data in requests] == [Wire.MSGPACK] * 3, requests
    assert await balances(platform.nc, account) == {"USD": (100_000, 0)}
