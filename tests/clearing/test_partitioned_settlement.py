"""Two wallet partitions: a fill whose parties sit on different partitions settles as one `settle` per
partition (op_id `...:p<n>`), every asset is conserved over both ledgers, and a partition that refuses
its part for good is compensated while the one that applied is reversed."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.money import MAX_UNITS
from contracts.subjects import wallet_partition
from tests.clearing.conftest import close_platform, make_platform
from tests.clearing.platform import FEES, Platform, account_on, balances, clearing, fund, place, refused, totals, wallet

P = 2
FEE_PARTITION = wallet_partition(FEES, P)
OTHER = 1 - FEE_PARTITION
NEAR_MAX = MAX_UNITS - 5_000  # 50.00 USD short of the maximum: the 99.95 USD a fill pays would pass it


@pytest.fixture(scope="module")
async def split(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """nats-server, two wallet partitions, matching and clearing, all told P=2."""
    platform = await make_platform(tmp_path_factory.mktemp("partitions"))
    platform.partitions = P
    try:
        await platform.start_all()
        yield platform
    finally:
        await close_platform(platform)


def on(partition: int, prefix: str) -> str:
    """A fresh account on `partition`."""
    return account_on(partition, P, f"{prefix}-{uuid.uuid4().hex[:6]}-")


async def of(platform: Platform, account: str) -> dict[str, tuple[int, int]]:
    return await balances(platform.nc, account, P)


async def nonzero(platform: Platform, account: str) -> dict[str, tuple[int, int]]:
    return {asset: row for asset, row in (await of(platform, account)).items() if row != (0, 0)}


async def events(platform: Platform, account: str) -> list[dict[str, Any]]:
    return list((await wallet(platform.nc, "events", P, account=account, limit=1000))["events"])


@pytest.mark.parametrize(("buyer_on", "seller_on"), [(OTHER, FEE_PARTITION), (FEE_PARTITION, OTHER)])
async def test_a_fill_across_partitions_settles_exactly_and_conserves_every_asset(
        split: Platform, buyer_on: int, seller_on: int) -> None:
    nc = split.nc
    buyer, seller = on(buyer_on, "buyer"), on(seller_on, "seller")
    await fund(nc, buyer, P, USD=1_000_000)  # 10,000.00 USD
    await fund(nc, seller, P, MSFT=50_000)   # 5 shares
    fees_before = (await of(split, FEES)).get("USD", (0, 0))

    sell = await place(nc, account=seller, instrument="MSFT", side="SELL", price="412.18", qty="2.0000")
    buy = await place(nc, account=buyer, instrument="MSFT", side="BUY", price="415.00", qty="2.0000")

    assert sell["status"] == "completed" and buy["status"] == "completed" and buy["order_status"] == "filled", buy
    quote, fee = 82_436, 41  # 2 x 412.18 USD; 5 bp a side, rounded down
    assert await of(split, buyer) == {"USD": (1_000_000 - quote - fee, 0), "MSFT": (20_000, 0)}
    assert await of(split, seller) == {"MSFT": (30_000, 0), "USD": (quote - fee, 0)}
    fees_after = (await of(split, FEES))["USD"]
    assert fees_after[0] - fees_before[0] == 2 * fee
    # conserved over both ledgers, fees included: what was deposited is all there is
    after = await totals(nc, [buyer, seller, FEES], P)
    assert (after["USD"] - sum(fees_before), after["MSFT"]) == (1_000_000, 50_000)
    # each party's legs were applied by its own partition, under that partition's part of the op_id
    trade = buy["fills"][0]["trade_id"]
    for account, partition in ((buyer, buyer_on), (seller, seller_on)):
        settled = [e for e in await events(split, account) if trade in e["op_id"]]
        assert settled and all(e["op_id"].endswith(f":{trade}:p{partition}") for e in settled), settled


async def test_a_partition_refusing_its_part_is_voided_and_the_applied_part_reversed(split: Platform) -> None:
    nc = split.nc
    # the seller's partition (with the fee account) refuses: its quote credit would pass the maximum
    buyer, seller = on(OTHER, "buyer"), on(FEE_PARTITION, "rich-seller")
    await fund(nc, buyer, P, USD=1_000_000)
    await fund(nc, seller, P, USD=NEAR_MAX, NVDA=10_000)
    before = {a: await nonzero(split, a) for a in (buyer, seller, FEES)}
    resting = await place(nc, account=seller, instrument="NVDA", side="SELL", price="100.00", qty="1.0000")
    assert resting["status"] == "completed" and resting["order_status"] == "new"

    error = await refused(place(nc, account=buyer, instrument="NVDA", side="BUY", price="100.00", qty="1.0000"))

    assert error.code is ErrorCode.AMOUNT_OUT_OF_RANGE, error
    saga = await clearing(nc, "saga_get", saga_id=error.detail["saga_id"])
    assert saga["status"] == "compensated" and saga["error"]["step"] == "process_fills", saga
    trade = saga["fills"][0]["trade_id"]
    assert saga["compensations"][0]["name"] == "reverse_fills"
    assert saga["compensations"][0]["result"]["voided"] == [trade]
    # the fill is busted: every account has exactly what it had (the buyer's NVDA came and went), nothing held
    assert {a: await nonzero(split, a) for a in (buyer, seller, FEES)} == before
    # the buyer's partition applied its part and then reversed it; the seller's moved nothing but the void
    buyer_ops = {e["op_id"] for e in await events(split, buyer) if trade in e["op_id"]}
    assert any(op.endswith(f":{trade}:p{OTHER}") and ":process_fills" in op for op in buyer_ops), buyer_ops
    assert any(op.endswith(f":{trade}:p{OTHER}") and ":reverse_fills" in op for op in buyer_ops), buyer_ops
