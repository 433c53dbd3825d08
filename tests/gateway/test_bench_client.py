"""`qt bench gateway`'s own HTTP/1.1 client against the real gateway: orders, refusals and GETs on one
keep-alive connection, each response read whole by its Content-Length."""

from __future__ import annotations

import json

from tests.clearing.platform import Platform, fund
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key
from tooling.bench.gateway_http import http_clients


async def test_one_connection_carries_orders_refusals_and_reads(gateway: GatewayProcess, platform: Platform) -> None:
    account = new_account("benchclient")
    await fund(platform.nc, account, USD=100_000)
    order = json.dumps({"instrument": "AAPL", "side": "BUY", "price": "50.00", "qty": "1.0000"}).encode()
    headers = {**bearer(gateway.token(account), new_key()), "Content-Type": "application/json"}
    async with http_clients(gateway.url, 1) as (http,):
        placed = await http.post("/v1/orders", order, headers)
        assert placed.status_code == 201, placed.content
        assert placed.headers["location"] == f"/v1/orders/{placed.json()['order_id']}"
        replayed = await http.post("/v1/orders", order, headers)
        assert replayed.content == placed.content and replayed.headers["idempotent-replayed"] == "true"
        refused = await http.post("/v1/orders", b'{"instrument": "AAPL"', headers)
        assert refused.status_code == 400 and refused.json()["code"] == "bad_payload"
        book = await http.get("/v1/markets/AAPL/book", {"depth": "1"})
        assert book.status_code == 200 and len(book.json()["bids"]) <= 1
