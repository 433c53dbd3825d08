"""Token-bucket rate limits: 429 with Retry-After and RateLimit-* headers, per account and per IP (bad tokens too)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from gateway.app import create_app
from gateway.ratelimit import TokenBucket
from gateway.settings import Settings
from tests.clearing.platform import Platform
from tests.gateway.conftest import start_gateway
from tests.gateway.harness import GatewayProcess, bearer, new_account, problem


@pytest.fixture(scope="module")
async def strict(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """A gateway allowing each account a burst of 3 and (practically) no refill."""
    process = await start_gateway(platform, "gateway-strict", QT_RATE_ACCOUNT="0.01", QT_BURST_ACCOUNT="3")
    try:
        yield process
    finally:
        process.kill()


async def test_an_account_past_its_burst_gets_429(strict: GatewayProcess) -> None:
    account = new_account("greedy")
    async with httpx.AsyncClient(base_url=strict.url, timeout=30) as client:
        headers = bearer(strict.token(account))
        served = [await client.get(f"/v1/accounts/{account}/balances", headers=headers) for _ in range(3)]
        assert [r.status_code for r in served] == [200, 200, 200]
        assert [r.headers["ratelimit-remaining"] for r in served] == ["2", "1", "0"]
        assert served[0].headers["ratelimit-limit"] == "3"

        refused = await client.get(f"/v1/accounts/{account}/balances", headers=headers)
        problem(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "100"  # one token at 0.01/s
        assert refused.headers["ratelimit-remaining"] == "0" and refused.headers["ratelimit-limit"] == "3"
        assert int(refused.headers["ratelimit-reset"]) > 0

        other = new_account("patient")
        assert (await client.get(f"/v1/accounts/{other}/balances", headers=bearer(strict.token(other)))
                ).status_code == 200
        assert (await client.get("/health")).status_code == 200


async def test_an_ip_past_its_burst_gets_429(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, rate_ip=0.01, burst_ip=2)  # in process: /v1/markets needs no NATS
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
        assert [(await client.get("/v1/markets")).status_code for _ in range(2)] == [200, 200]
        refused = await client.get("/v1/markets")
        problem(refused, 429, "rate_limited")
        assert refused.headers["retry-after"] == "100"
        assert (await client.get("/health")).status_code == 200  # probes are never limited


@pytest.fixture(scope="module")
async def strict_ip(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """A gateway allowing each client IP a burst of 3 and (practically) no refill."""
    process = await start_gateway(platform, "gateway-strict-ip", QT_RATE_IP="0.01", QT_BURST_IP="3")
    try:
        yield process
    finally:
        process.kill()


async def test_a_flood_of_bad_tokens_is_limited_per_ip(strict_ip: GatewayProcess) -> None:
    async with httpx.AsyncClient(base_url=strict_ip.url, timeout=30) as client:
        headers = bearer("not.a.token")
        served = [await client.get("/v1/accounts/alice/balances", headers=headers) for _ in range(3)]
        for reply in served:
            problem(reply, 401, "unauthorized")
        assert [r.headers["ratelimit-remaining"] for r in served] == ["2", "1", "0"]
        refused = await client.get("/v1/accounts/alice/balances", headers=headers)
        problem(refused, 429, "rate_limited")  # charged before the token was looked at
        assert refused.headers["retry-after"] == "100"
        good = bearer(strict_ip.token(new_account("sameip")))
        problem(await client.get("/v1/markets", headers=good), 429, "rate_limited")  # the IP is spent for all
        assert (await client.get("/health")).status_code == 200


def test_a_bucket_refills_at_its_rate_up_to_its_burst() -> None:
    bucket = TokenBucket(rate=2.0, burst=4.0, now=0.0)
    assert [bucket.take(0.0).allowed for _ in range(5)] == [True, True, True, True, False]
    assert bucket.take(0.0).retry_after_s == 1
    assert bucket.take(0.5).allowed  # one token accrued in half a second
    assert not bucket.take(0.5).allowed
    bucket.refill(100.0)
    assert bucket.tokens == 4.0
