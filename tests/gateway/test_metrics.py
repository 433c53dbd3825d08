"""`/metrics`: every node instance (two of clearing here), one HELP/TYPE per family, the gateway's HTTP metrics."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from mesh.rpc import discover
from tests.clearing.platform import Platform
from tests.conftest import wait_for_service
from tests.gateway.harness import GatewayProcess, bearer


@pytest.fixture(scope="module")
async def second_clearing(platform: Platform) -> AsyncIterator[set[str]]:
    """A second clearing instance for this module; yields the ids of every clearing instance."""
    proc = await platform.start("clearing", instance="-metrics", wait=False)
    try:
        await wait_for_service(platform.nc, "clearing", timeout_s=30)
        ids: set[str] = set()
        for _ in range(100):  # the new instance registers with micro shortly after it starts
            ids = {i["info"]["id"] for i in await discover(platform.nc, 0.3)
                   if (i.get("info") or {}).get("name") == "clearing"}
            if len(ids) == 2:
                break
        assert len(ids) == 2, ids
        yield ids
    finally:
        proc.terminate()


async def scrape(client: httpx.AsyncClient, ops_token: str) -> str:
    reply = await client.get("/metrics", headers=bearer(ops_token))
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"].startswith("text/plain; version=0.0.4")
    return reply.text


def samples(text: str, name: str) -> list[tuple[dict[str, str], float]]:
    return [(s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples
            if s.name == name]


async def test_the_scrape_has_every_clearing_instance(client: httpx.AsyncClient, ops_token: str,
                                                      second_clearing: set[str]) -> None:
    assert (await client.get("/v1/markets/BTC-USD/book")).status_code == 200  # a matching request
    assert (await client.get("/v1/accounts/nobody/balances", headers=bearer(ops_token))).status_code == 200
    text = await scrape(client, ops_token)

    breakers = samples(text, "qt_breaker_state")
    assert {labels["instance"] for labels, _ in breakers if labels["node"] == "clearing"} == second_clearing
    assert {labels["node"] for labels, _ in samples(text, "qt_requests_total")} >= {"wallet", "matching"}


async def test_each_family_is_described_once(client: httpx.AsyncClient, ops_token: str,
                                             second_clearing: set[str]) -> None:
    text = await scrape(client, ops_token)

    typed = Counter(line.split()[2] for line in text.splitlines() if line.startswith("# TYPE "))
    assert typed and max(typed.values()) == 1, [name for name, n in typed.items() if n > 1]
    assert len({family.name for family in text_string_to_metric_families(text)}) == len(
        list(text_string_to_metric_families(text)))


async def test_gateway_http_requests_are_counted_by_route_template(client: httpx.AsyncClient, ops_token: str,
                                                                   gateway: GatewayProcess) -> None:
    def count(text: str, route: str, status: str) -> float:
        return sum(value for labels, value in samples(text, "qt_http_requests_total")
                   if labels["node"] == "gateway" and labels["route"] == route and labels["status"] == status)

    before = await scrape(client, ops_token)
    for _ in range(3):
        assert (await client.get("/v1/markets/BTC-USD")).status_code == 200
    refused = await client.get("/v1/orders/some-order", headers=bearer("not-a-jwt"))
    assert refused.status_code == 401
    after = await scrape(client, ops_token)

    assert count(after, "/v1/markets/{symbol}", "200") - count(before, "/v1/markets/{symbol}", "200") == 3
    assert count(after, "/v1/orders/{order_id}", "401") - count(before, "/v1/orders/{order_id}", "401") == 1
    latency = [labels for labels, _ in samples(after, "qt_http_request_seconds_count")
               if labels["route"] == "/v1/markets/{symbol}"]
    assert latency and latency[0]["method"] == "GET"
