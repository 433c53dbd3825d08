"""Amounts past MAX_UNITS over HTTP: 422 `amount_out_of_range`, and the balance is unchanged."""

from __future__ import annotations

import httpx
import pytest

from contracts.money import MAX_UNITS, format_amount
from tests.clearing.platform import Platform, balances, clearing, fund
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem

NEAR_MAX = format_amount("USD", MAX_UNITS - 100)


async def test_a_deposit_to_near_the_maximum_then_another_is_422_and_changes_nothing(
    client: httpx.AsyncClient, gateway: GatewayProcess, ops_token: str, platform: Platform
) -> None:
    account = new_account("whale")
    first = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": NEAR_MAX},
                              headers=bearer(ops_token, new_key()))
    assert first.status_code == 200, first.text

    second = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "1.01"},
                               headers=bearer(ops_token, new_key()))

    body = problem(second, 422, "amount_out_of_range")
    assert body["context"]["max"] == format_amount("USD", MAX_UNITS)
    assert await balances(platform.nc, account) == {"USD": (MAX_UNITS - 100, 0)}


@pytest.mark.parametrize("amount", [format_amount("USD", MAX_UNITS + 1), "9" * 40, "9223372036854775808.00"])
async def test_an_amount_past_the_maximum_is_422_before_anything_runs(
    client: httpx.AsyncClient, ops_token: str, platform: Platform, amount: str
) -> None:
    account = new_account("big")
    await fund(platform.nc, account, USD=100)

    refused = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": amount},
                                headers=bearer(ops_token, new_key()))

    problem(refused, 422, "amount_out_of_range")
    assert await balances(platform.nc, account) == {"USD": (100, 0)}


@pytest.mark.parametrize("order", [
    {"price": "10000000000000.00", "qty": "1.0000"},  # a maximal price: its value plus fee is not
    {"price": "100.00", "qty": "99999999999.0000"},
    {"price": "10000000000000.01", "qty": "1.0000"},
])
async def test_an_order_worth_more_than_the_maximum_is_422_and_no_saga_starts(
    client: httpx.AsyncClient, gateway: GatewayProcess, platform: Platform, order: dict[str, str]
) -> None:
    account = new_account("dreamer")
    await fund(platform.nc, account, USD=1_000_000)

    refused = await client.post("/v1/orders", headers=bearer(gateway.token(account), new_key()),
                                json={"instrument": "AAPL", "side": "BUY", **order})

    problem(refused, 422, "amount_out_of_range")
    assert await balances(platform.nc, account) == {"USD": (1_000_000, 0)}
    assert (await clearing(platform.nc, "saga_list", account=account))["sagas"] == []
