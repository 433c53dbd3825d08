"""`inject_failure_step` is an operator's fault drill: a trader's order carrying it is refused before anything runs."""

from __future__ import annotations

import httpx

from contracts.errors import ErrorCode
from contracts.gateway import Role
from gateway.payload import derived_id
from gateway.tokens import Principal
from tests.clearing.platform import Platform, balances, clearing, fund, refused
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem

#: An IOC that would bust whatever it filled (and every maker it met) once it had settled.
DRILL = {"instrument": "AAPL", "side": "BUY", "price": "1.00", "qty": "1.0000", "tif": "IOC",
         "inject_failure_step": "after:process_fills"}


async def test_a_trader_may_not_inject_a_failure(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                 platform: Platform) -> None:
    account = new_account("drill")
    await fund(platform.nc, account, USD=10_000)
    key = new_key()
    token = gateway.token(account)
    problem(await client.post("/v1/orders", json=DRILL, headers=bearer(token, key)), 403, "forbidden")
    assert await balances(platform.nc, account) == {"USD": (10_000, 0)}  # no hold was taken
    saga_id = derived_id(Principal(account, Role.TRADER), account, key)
    assert (await refused(clearing(platform.nc, "saga_get", saga_id=saga_id))).code is ErrorCode.NOT_FOUND
    assert (await client.get("/v1/orders", headers=bearer(token))).json()["sagas"] == []
    # nothing was recorded under the key either: the same order without the drill runs
    plain = {k: v for k, v in DRILL.items() if k != "inject_failure_step"}
    assert (await client.post("/v1/orders", json=plain, headers=bearer(token, key))).status_code == 201


async def test_ops_may_inject_a_failure(client: httpx.AsyncClient, platform: Platform, ops_token: str) -> None:
    account = new_account("drill")
    await fund(platform.nc, account, USD=10_000)
    body = {**DRILL, "account": account, "tif": "GTC", "inject_failure_step": "after:submit_order"}
    placed = await client.post("/v1/orders", json=body, headers=bearer(ops_token, new_key()))
    assert placed.status_code == 201, placed.text
    assert placed.json()["status"] == "compensated"
    assert await balances(platform.nc, account) == {"USD": (10_000, 0)}  # the hold was released
