"""Idempotency-Key records expire with the `idempotency` bucket's TTL, which the gateway sets from
`QT_IDEMPOTENCY_TTL_S` (24 h by default): past it the same key runs again (and the op_id derived
from it still keeps the retry a no-op downstream)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from contracts.gateway import IDEMPOTENT_REPLAYED_HEADER, Role
from contracts.subjects import IDEMPOTENCY_BUCKET
from gateway.settings import Settings
from mesh.jetstream import ensure_all
from tests.clearing.conftest import close_platform, make_platform
from tests.clearing.platform import balances
from tests.gateway.conftest import start_gateway
from tests.gateway.harness import bearer, new_account, new_key

TTL_S = 1.0


def test_the_ttl_setting_defaults_to_24_hours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QT_IDEMPOTENCY_TTL_S", raising=False)
    assert Settings.from_env().idempotency_ttl_s == 24 * 3600
    monkeypatch.setenv("QT_IDEMPOTENCY_TTL_S", "90")
    assert Settings.from_env().idempotency_ttl_s == 90


async def test_a_record_past_the_configured_ttl_lets_the_key_run_again(tmp_path: Path) -> None:
    platform = await make_platform(tmp_path)
    try:
        js = platform.nc.jetstream()
        await ensure_all(js)  # as `qt up` does before the gateway starts: the default 24 h TTL
        assert (await js.stream_info(f"KV_{IDEMPOTENCY_BUCKET}")).config.max_age == 24 * 3600
        await platform.start_all()
        gateway = await start_gateway(platform, "gateway-ttl", QT_IDEMPOTENCY_TTL_S=str(TTL_S))
        try:
            assert (await js.stream_info(f"KV_{IDEMPOTENCY_BUCKET}")).config.max_age == TTL_S
            account, key = new_account("ttl"), new_key()
            headers = bearer(gateway.token("operator", Role.OPS), key)
            deposit = {"asset": "USD", "amount": "1.00"}
            async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
                first = await client.post(f"/v1/accounts/{account}/deposits", json=deposit, headers=headers)
                again = await client.post(f"/v1/accounts/{account}/deposits", json=deposit, headers=headers)
                assert first.status_code == again.status_code == 200, (first.text, again.text)
                assert IDEMPOTENT_REPLAYED_HEADER not in first.headers
                assert again.headers[IDEMPOTENT_REPLAYED_HEADER] == "true"

                async with asyncio.timeout(30):  # the server expires the record (checked about every TTL)
                    while (await js.stream_info(f"KV_{IDEMPOTENCY_BUCKET}")).state.messages:
                        await asyncio.sleep(0.2)
                after = await client.post(f"/v1/accounts/{account}/deposits", json=deposit, headers=headers)
            assert after.status_code == 200, after.text
            assert IDEMPOTENT_REPLAYED_HEADER not in after.headers  # the gateway ran it again
            assert after.json() == first.json()  # ... and the wallet answered its op_id's first reply
            assert await balances(platform.nc, account) == {"USD": (100, 0)}
        finally:
            gateway.kill()
    finally:
        await close_platform(platform)
