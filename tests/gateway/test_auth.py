"""Tokens: what is refused (401), what a trader may not touch (403), and that nothing changes meanwhile."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from gateway.keys import ensure_key_pair, load_private
from tests.clearing.platform import Platform, balances, fund
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, str], claims: dict[str, object], secret: bytes | None) -> str:
    """A token built by hand: HMAC-signed with `secret`, or unsigned (`alg: none`)."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{_b64(signature)}"


def claims_for(account: str) -> dict[str, object]:
    now = int(time.time())
    return {"sub": account, "role": "ops", "iss": "quanttrade", "aud": "quanttrade-api", "iat": now, "nbf": now,
            "exp": now + 600}


def bad_tokens(gateway: GatewayProcess, account: str) -> dict[str, str]:
    """Every kind of token the gateway must refuse, by name."""
    public_pem = ensure_key_pair(gateway.data_dir)[1].read_bytes()
    stranger = jwt.encode(claims_for(account), Ed25519PrivateKey.generate(), algorithm="EdDSA")
    good = gateway.token(account)
    return {
        "foreign_key": stranger,
        "expired": gateway.token(account, now=time.time() - 7200, ttl_s=3600),
        "not_yet_valid": gateway.token(account, now=time.time() + 3600),
        "alg_none": forged({"alg": "none", "typ": "JWT"}, claims_for(account), None),
        "hs256_with_public_key": forged({"alg": "HS256", "typ": "JWT"}, claims_for(account), public_pem),
        "wrong_audience": gateway.token(account, audience="someone-else"),
        "wrong_issuer": gateway.token(account, issuer="evil"),
        "tampered": good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB"),
        "garbage": "not.a.token",
    }


@pytest.mark.parametrize("kind", ["foreign_key", "expired", "not_yet_valid", "alg_none", "hs256_with_public_key",
                                  "wrong_audience", "wrong_issuer", "tampered", "garbage"])
async def test_bad_tokens_are_401_and_change_nothing(kind: str, client: httpx.AsyncClient, gateway: GatewayProcess,
                                                     platform: Platform) -> None:
    account = new_account("victim")
    await fund(platform.nc, account, USD=1_000)
    token = bad_tokens(gateway, account)[kind]
    refused = await client.post(f"/v1/accounts/{account}/withdrawals", json={"asset": "USD", "amount": "1.00"},
                                headers=bearer(token, new_key()))
    problem(refused, 401, "unauthorized")
    assert refused.headers["www-authenticate"].startswith("Bearer")
    assert await balances(platform.nc, account) == {"USD": (1_000, 0)}


async def test_no_token_or_another_scheme_is_401(client: httpx.AsyncClient) -> None:
    problem(await client.get("/v1/accounts/alice/balances"), 401, "unauthorized")
    problem(await client.get("/v1/accounts/alice/balances", headers={"Authorization": "Basic YTpi"}),
            401, "unauthorized")


async def test_a_trader_acts_only_on_its_own_account(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                     platform: Platform) -> None:
    mallory, victim = new_account("mallory"), new_account("victim")
    await fund(platform.nc, victim, USD=1_000)
    token = gateway.token(mallory)
    problem(await client.get(f"/v1/accounts/{victim}/balances", headers=bearer(token)), 403, "not_owner")
    problem(await client.get(f"/v1/accounts/{victim}/events", headers=bearer(token)), 403, "not_owner")
    problem(await client.post(f"/v1/accounts/{victim}/withdrawals", json={"asset": "USD", "amount": "1.00"},
                              headers=bearer(token, new_key())), 403, "forbidden")  # money moves are ops-only
    problem(await client.post("/v1/orders", headers=bearer(token, new_key()),
                              json={"account": victim, "instrument": "AAPL", "side": "BUY", "price": "1.00",
                                    "qty": "1.0000"}), 403, "not_owner")
    problem(await client.get("/v1/sagas", params={"account": victim}, headers=bearer(token)), 403, "not_owner")
    assert await balances(platform.nc, victim) == {"USD": (1_000, 0)}


async def test_ops_endpoints_refuse_traders(client: httpx.AsyncClient, gateway: GatewayProcess) -> None:
    token = gateway.token(new_account("trader"))
    problem(await client.get("/v1/services", headers=bearer(token)), 403, "forbidden")
    problem(await client.get("/v1/ops/dlq", headers=bearer(token)), 403, "forbidden")
    problem(await client.post("/v1/ops/rebuild", headers=bearer(token, new_key())), 403, "forbidden")
    problem(await client.post("/v1/ops/dlq/1/replay", headers=bearer(token, new_key())), 403, "forbidden")


async def test_ops_reach_the_dlq(client: httpx.AsyncClient, ops_token: str) -> None:
    listed = await client.get("/v1/ops/dlq", headers=bearer(ops_token))
    assert listed.status_code == 200, listed.text
    assert set(listed.json()) == {"entries", "total"}
    problem(await client.post("/v1/ops/dlq/999999/replay", headers=bearer(ops_token, new_key())), 404, "not_found")


async def test_a_token_for_an_unknown_role_is_401(client: httpx.AsyncClient, gateway: GatewayProcess) -> None:
    claims = {**claims_for("someone"), "role": "admin"}
    token = jwt.encode(claims, load_private(ensure_key_pair(gateway.data_dir)[0]), algorithm="EdDSA")
    problem(await client.get("/v1/accounts/someone/balances", headers=bearer(token)), 401, "unauthorized")
