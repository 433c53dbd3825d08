"""Money through the gateway: deposit and withdraw (ops), balances, events, verify, rebuild."""

from __future__ import annotations

import httpx
import pytest

from contracts.gateway import Role
from tests.clearing.platform import Platform, balances, fund
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem


async def test_deposit_then_balances_in_decimal_strings(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                        ops_token: str, platform: Platform) -> None:
    account = new_account("dep")
    token = gateway.token(account)
    deposited = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "125.50"},
                                  headers=bearer(ops_token, new_key()))
    assert deposited.status_code == 200, deposited.text
    assert deposited.json()["changes"][0]["available"] == "125.50"
    read = await client.get(f"/v1/accounts/{account}/balances", headers=bearer(token))
    assert read.json() == {"account": account, "balances": {"USD": {"available": "125.50", "held": "0.00",
                                                                      "version": 1}}}
    assert await balances(platform.nc, account) == {"USD": (12550, 0)}


async def test_withdraw_more_than_available_is_insufficient_funds(client: httpx.AsyncClient,
                                                                  ops_token: str) -> None:
    account = new_account("wd")
    token = ops_token
    await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "10.00"},
                      headers=bearer(token, new_key()))
    ok = await client.post(f"/v1/accounts/{account}/withdrawals", json={"asset": "USD", "amount": "4.00"},
                           headers=bearer(token, new_key()))
    assert ok.status_code == 200, ok.text
    refused = await client.post(f"/v1/accounts/{account}/withdrawals", json={"asset": "USD", "amount": "6.01"},
                                headers=bearer(token, new_key()))
    problem(refused, 409, "insufficient_funds")


async def test_events_page_and_verify(client: httpx.AsyncClient, gateway: GatewayProcess, ops_token: str) -> None:
    account = new_account("ev")
    token = gateway.token(account)
    for amount in ("1.00", "2.00", "3.00"):
        await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": amount},
                          headers=bearer(ops_token, new_key()))
    page = await client.get(f"/v1/accounts/{account}/events", params={"limit": 2}, headers=bearer(token))
    assert [e["amount"] for e in page.json()["events"]] == ["1.00", "2.00"]
    rest = await client.get(f"/v1/accounts/{account}/events", params={"after": page.json()["next_after"]},
                            headers=bearer(token))
    assert [e["amount"] for e in rest.json()["events"]] == ["3.00"]
    newest = await client.get(f"/v1/accounts/{account}/events", params={"limit": 2, "newest_first": "true"},
                              headers=bearer(token))
    assert [e["amount"] for e in newest.json()["events"]] == ["3.00", "2.00"]
    older = await client.get(f"/v1/accounts/{account}/events",
                             params={"newest_first": "true", "before": newest.json()["next_before"]},
                             headers=bearer(token))
    assert [e["amount"] for e in older.json()["events"]] == ["1.00"]
    for mixed in ({"newest_first": "true", "after": 1}, {"before": 3}):  # a cursor of the other direction
        problem(await client.get(f"/v1/accounts/{account}/events", params=mixed, headers=bearer(token)),
                422, "validation_error")
    verified = await client.get(f"/v1/accounts/{account}/verify", headers=bearer(token))
    assert verified.json()["ok"] is True and verified.json()["events_checked"] == 3


async def test_rebuild_is_for_ops(client: httpx.AsyncClient, gateway: GatewayProcess, ops_token: str) -> None:
    account = new_account("rb")
    await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "7.00"},
                      headers=bearer(ops_token, new_key()))
    refused = await client.post(f"/v1/accounts/{account}/rebuild", headers=bearer(gateway.token(account), new_key()))
    problem(refused, 403, "forbidden")
    rebuilt = await client.post(f"/v1/accounts/{account}/rebuild",
                                headers=bearer(gateway.token("operator", Role.OPS), new_key()))
    assert rebuilt.status_code == 200, rebuilt.text
    assert rebuilt.json()["identical"] is True


async def test_ops_may_deposit_for_any_account(client: httpx.AsyncClient, gateway: GatewayProcess,
                                               ops_token: str, platform: Platform) -> None:
    account = new_account("opsdep")
    done = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "BTC", "amount": "0.5"},
                             headers=bearer(ops_token, new_key()))
    assert done.status_code == 200, done.text
    assert await balances(platform.nc, account) == {"BTC": (50_000_000, 0)}


@pytest.mark.parametrize("kind", ["deposits", "withdrawals"])
async def test_a_trader_may_not_move_money_on_its_own_account(kind: str, client: httpx.AsyncClient,
                                                              gateway: GatewayProcess, platform: Platform) -> None:
    account = new_account("self")
    await fund(platform.nc, account, USD=1_000)
    refused = await client.post(f"/v1/accounts/{account}/{kind}", json={"asset": "USD", "amount": "1.00"},
                                headers=bearer(gateway.token(account), new_key()))
    problem(refused, 403, "forbidden")
    assert await balances(platform.nc, account) == {"USD": (1_000, 0)}
    events = await client.get(f"/v1/accounts/{account}/events", headers=bearer(gateway.token(account)))
    assert len(events.json()["events"]) == 1  # the funding deposit only
