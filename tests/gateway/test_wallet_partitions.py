"""The gateway on two wallet partitions: an account's requests reach its own partition, and the ops-wide
verify and rebuild ask both and merge, naming a partition that does not answer instead of skipping it, and
`/ready` says 503 while one partition is down; a gateway told another partition count than the wallets' is
not ready, and what it sends to a partition that does not own the account is refused (421) unapplied; a
clearing told another count refuses to start."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.gateway import Role
from contracts.subjects import WALLET_PARTITIONS_ENV
from tests.clearing.conftest import close_platform, make_platform
from tests.clearing.platform import Platform, account_on, balances, verify_all, wait_partition
from tests.gateway.conftest import start_gateway
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem
from tests.polling import eventually

P = 2


@pytest.fixture(scope="module")
async def split(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[Platform, GatewayProcess]]:
    """Two wallet partitions, matching, clearing and a gateway, all told P=2."""
    platform = await make_platform(tmp_path_factory.mktemp("gw-partitions"))
    platform.partitions = P
    try:
        await platform.start_all()
        gateway = await start_gateway(platform, "gateway", **{WALLET_PARTITIONS_ENV: str(P)})
        try:
            yield platform, gateway
        finally:
            gateway.kill()
    finally:
        await close_platform(platform)


async def deposit(client: httpx.AsyncClient, token: str, account: str, amount: str) -> httpx.Response:
    return await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": amount},
                             headers=bearer(token, new_key()))


async def test_accounts_on_either_partition_deposit_and_read_through_the_gateway(
        split: tuple[Platform, GatewayProcess]) -> None:
    platform, gateway = split
    ops = gateway.token("operator", Role.OPS)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
        for partition in range(P):
            account = account_on(partition, P, new_account(f"gw-p{partition}-"))
            assert (await deposit(client, ops, account, "7.25")).status_code == 200
            read = await client.get(f"/v1/accounts/{account}/balances", headers=bearer(gateway.token(account)))
            assert read.json()["balances"]["USD"]["available"] == "7.25", read.text
            assert await balances(platform.nc, account, P) == {"USD": (725, 0)}  # on its own partition


async def test_ops_verify_and_rebuild_merge_every_partition(split: tuple[Platform, GatewayProcess]) -> None:
    platform, gateway = split
    ops = gateway.token("operator", Role.OPS)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=60.0) as client:
        for partition in range(P):
            await deposit(client, ops, account_on(partition, P, new_account("gw-all-")), "1.00")
        verified = await client.get("/v1/ops/verify", headers=bearer(ops))
        rebuilt = await client.post("/v1/ops/rebuild", json={}, headers=bearer(ops, new_key()))

    per_partition = await verify_all(platform.nc, P)
    assert all(r["events_checked"] > 0 for r in per_partition)  # both ledgers hold events
    assert verified.status_code == 200, verified.text
    assert verified.json()["ok"] is True
    assert verified.json()["events_checked"] == sum(r["events_checked"] for r in per_partition)
    assert rebuilt.status_code == 200, rebuilt.text
    assert rebuilt.json()["identical"] is True
    assert rebuilt.json()["accounts"] >= 2


async def test_ops_verify_names_the_partition_that_does_not_answer(split: tuple[Platform, GatewayProcess]) -> None:
    platform, gateway = split
    ops = gateway.token("operator", Role.OPS)
    down = next(p for p in platform.procs if p.extra_env.get("QT_WALLET_PARTITION") == "1")
    down.kill9()
    try:
        async with httpx.AsyncClient(base_url=gateway.url, timeout=60.0) as client:
            refused = await client.get("/v1/ops/verify", headers=bearer(ops))
            not_ready = await client.get("/ready")  # one partition down: the gateway cannot take every order
        body = problem(refused, 503, "unavailable")
        assert "wallet partition p1 did not answer" in body["detail"], body
        assert not_ready.status_code == 503, not_ready.text
        assert not_ready.json()["services"]["wallet p1"] is False
        assert not_ready.json()["services"]["wallet p0"] is True
    finally:
        restarted = await platform.start("wallet", instance="-p1", wait=False, **down.extra_env)
        await wait_partition(platform.nc, 1, P, restarted)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as client:
        ready = await eventually(lambda: client.get("/ready"), lambda r: r.status_code == 200, what="/ready again")
    assert ready.json()["services"]["wallet p1"] is True
    assert ready.json()["services"]["wallet partition count"] is True


async def test_a_gateway_told_another_partition_count_is_not_ready_and_refused_421_changing_nothing(
        split: tuple[Platform, GatewayProcess]) -> None:
    platform, _ = split
    name = "gateway-one-partition"
    misconfigured = GatewayProcess(platform.server.url, platform.root / name, platform.server.data_dir, name,
                                   {WALLET_PARTITIONS_ENV: "1"}).start()
    try:
        account = account_on(1, P, new_account("gw-wrong-"))  # owned by p1; a gateway told P=1 asks p0
        async with httpx.AsyncClient(base_url=misconfigured.url, timeout=30.0) as client:
            # every probe it knows answers (it asks wallet p0 only), but the counts differ: not ready
            not_ready = await eventually(lambda: client.get("/ready"),
                                         lambda r: r.status_code == 503 and r.json()["services"]["wallet p0"],
                                         ignoring=(httpx.TransportError,), what="the wallet probe answering")
            refused = await deposit(client, misconfigured.token("operator", Role.OPS), account, "3.00")
            read = await client.get(f"/v1/accounts/{account}/balances",
                                    headers=bearer(misconfigured.token(account)))
            documented = (await client.get("/openapi.json")).json()
    finally:
        misconfigured.kill()
    services = not_ready.json()["services"]
    assert services["wallet partition count"] is False and services["clearing"] is True, not_ready.text
    body = problem(refused, 421, "wrong_partition")
    assert body["context"]["partition"] == 0 and body["context"]["accounts"] == {account: 1}, body
    problem(read, 421, "wrong_partition")
    assert await balances(platform.nc, account, P) == {}, "the refused deposit reached no ledger"
    for path, method in (("/v1/accounts/{account}/deposits", "post"), ("/v1/accounts/{account}/balances", "get")):
        assert "421" in documented["paths"][path][method]["responses"], path


async def test_clearing_told_another_partition_count_refuses_to_start(split: tuple[Platform, GatewayProcess]) -> None:
    platform, _ = split
    wrong = await platform.start("clearing", instance="-one-partition", wait=False, **{WALLET_PARTITIONS_ENV: "1"})
    assert wrong.proc is not None
    assert await asyncio.to_thread(wrong.proc.wait, 30) == 2
    logged = (wrong.data_dir / "nodes.clearing.log").read_text()
    assert "partition count mismatch" in logged and "wallets=2" in logged, logged
