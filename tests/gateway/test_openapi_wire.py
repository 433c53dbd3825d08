"""The OpenAPI document says what the wire does: enforced enums and patterns, error statuses, media types,
the DLQ list shape, `Allow` on 405; and integers past int64 are a 422, not a 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from contracts.instruments import INSTRUMENTS
from contracts.money import ASSET_SCALES
from tests.gateway.harness import bearer, new_key, problem


@pytest.fixture(scope="module")
async def document(client: httpx.AsyncClient) -> dict[str, Any]:
    return (await client.get("/openapi.json")).json()


def parameter(document: dict[str, Any], path: str, method: str, name: str) -> dict[str, Any]:
    found: dict[str, Any] = next(p for p in document["paths"][path][method]["parameters"] if p["name"] == name)
    return found["schema"]


async def test_enforced_values_are_documented(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    assert parameter(document, "/v1/markets/{symbol}/book", "get", "symbol")["enum"] == list(INSTRUMENTS)
    assert schemas["PlaceOrderRequest"]["properties"]["instrument"]["enum"] == list(INSTRUMENTS)
    assert schemas["DepositRequest"]["properties"]["asset"]["enum"] == list(ASSET_SCALES)
    assert parameter(document, "/v1/markets/{symbol}/candles", "get", "tf")["enum"] == ["1m", "5m", "1h"]
    assert "pattern" in parameter(document, "/v1/orders/{order_id}", "get", "order_id")
    assert parameter(document, "/v1/accounts/{account}/events", "get", "after")["maximum"] == 2**63 - 1


async def test_money_in_market_and_instrument_views_is_a_decimal_string(document: dict[str, Any]) -> None:
    schemas = document["components"]["schemas"]

    for view, field in (("InstrumentView", "tick"), ("TapeTrade", "price"), ("ClientFill", "price"),
                        ("ClientFill", "fee"), ("ClientSagaView", "filled"), ("ClientSagaView", "fee")):
        assert schemas[view]["properties"][field]["type"] == "string", (view, field)


async def test_error_statuses_and_media_types_are_declared(document: dict[str, Any]) -> None:
    place = document["paths"]["/v1/orders"]["post"]["responses"]
    metrics = document["paths"]["/metrics"]["get"]["responses"]

    assert {"401", "403", "404", "409", "422", "429", "503"} <= place.keys()
    assert "application/problem+json" in place["422"]["content"]
    assert list(metrics["200"]["content"]) == ["text/plain; version=0.0.4"]
    listed = document["paths"]["/v1/ops/dlq"]["get"]["responses"]["200"]["content"]["application/json"]["schema"]
    assert set(document["components"]["schemas"][listed["$ref"].rsplit("/", 1)[1]]["properties"]) == {
        "entries", "total"}


async def test_405_allows_every_method_of_the_path(client: httpx.AsyncClient, ops_token: str) -> None:
    refused = await client.request("OPTIONS", "/v1/orders", headers=bearer(ops_token))

    problem(refused, 405, "method_not_allowed")
    assert refused.headers["allow"] == "GET, POST"


async def test_integers_past_int64_are_a_validation_error(client: httpx.AsyncClient, ops_token: str) -> None:
    events = await client.get("/v1/accounts/alice/events", params={"after": 2**63}, headers=bearer(ops_token))
    candles = await client.get("/v1/markets/BTC-USD/candles", params={"before": 2**64})
    replay = await client.post(f"/v1/ops/dlq/{2**64}/replay", headers=bearer(ops_token, new_key()))

    for refused in (events, candles, replay):
        problem(refused, 422, "validation_error")
