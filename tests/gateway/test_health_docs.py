"""Health, readiness and the OpenAPI document built from the contracts."""

from __future__ import annotations

import httpx


async def test_health_and_ready(client: httpx.AsyncClient) -> None:
    assert (await client.get("/health")).json() == {"status": "ok"}
    ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json()["nats"] is True
    services = ready.json()["services"]
    assert services["wallet p0"] is True and services["matching (AAPL)"] is True and services["clearing"] is True


async def test_openapi_shows_money_as_decimal_strings(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    assert schemas["DepositRequest"]["properties"]["amount"]["type"] == "string"
    assert set(schemas["DepositRequest"]["required"]) == {"asset", "amount"}
    assert "saga_id" not in schemas["PlaceOrderRequest"]["properties"]
    place = document["paths"]["/v1/orders"]["post"]
    assert {"name": "Idempotency-Key", "in": "header"}.items() <= place["parameters"][0].items()
    assert place["security"] == [{"bearer": []}]
    assert "text/html" in (await client.get("/docs")).headers["content-type"]
