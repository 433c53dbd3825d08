"""Market data through the gateway: tape, candles and ticker from the `marketdata` service (public routes)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from tests.clearing.platform import Platform, fund
from tests.conftest import wait_for_service
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem
from tests.polling import eventually


@pytest.fixture(scope="module")
async def market_data(platform: Platform) -> AsyncIterator[None]:
    """The market data node, on the shared platform (killed with it)."""
    await platform.start("market_data", wait=False)
    await wait_for_service(platform.nc, "marketdata", timeout_s=30)
    yield


async def test_a_trade_reaches_tape_candles_and_ticker(market_data: None, client: httpx.AsyncClient,
                                                       gateway: GatewayProcess, platform: Platform) -> None:
    buyer, seller = new_account("mdbuy"), new_account("mdsell")
    await fund(platform.nc, buyer, USD=1_000_000)
    await fund(platform.nc, seller, ETH=100_000_000)
    order = {"instrument": "ETH-USD", "price": "3450.00", "qty": "0.0100"}
    sold = await client.post("/v1/orders", json={**order, "side": "SELL"}, headers=bearer(gateway.token(seller),
                                                                                          new_key()))
    bought = await client.post("/v1/orders", json={**order, "side": "BUY"}, headers=bearer(gateway.token(buyer),
                                                                                           new_key()))
    assert sold.status_code == bought.status_code == 201
    trade_id = bought.json()["fills"][0]["trade_id"]

    tape = await eventually(lambda: client.get("/v1/markets/ETH-USD/trades", params={"limit": 5}),
                            lambda r: any(t["trade_id"] == trade_id for t in r.json().get("trades", [])),
                            every_s=0.1, what=f"trade {trade_id} on the tape")
    assert tape.status_code == 200, tape.text
    mine = next(t for t in tape.json()["trades"] if t["trade_id"] == trade_id)
    assert (mine["price"], mine["qty"], mine["taker_side"]) == ("3450.00", "0.01000000", "BUY")

    ticker = await client.get("/v1/markets/ETH-USD/ticker")
    assert ticker.status_code == 200 and ticker.json()["last"] == "3450.00"
    candles = await client.get("/v1/markets/ETH-USD/candles", params={"tf": "1m", "limit": 5})
    assert candles.status_code == 200 and candles.json()["candles"][-1]["close"] == "3450.00"


async def test_market_queries_are_validated(market_data: None, client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/markets/ETH-USD/candles", params={"tf": "2m"}), 422, "validation_error")
    problem(await client.get("/v1/markets/ETH-USD/trades", params={"limit": "0"}), 422, "validation_error")
    problem(await client.get("/v1/markets/NOPE/ticker"), 422, "unknown_instrument")
