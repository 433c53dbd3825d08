"""A trade whose settlement would push a balance past MAX_UNITS: the wallet refuses it deterministically,
and the saga unwinds to a final status with its reason, instead of retrying forever with the breaker flapping."""

from __future__ import annotations

import pytest

from contracts.errors import ErrorCode
from contracts.money import MAX_UNITS, format_amount
from contracts.subjects import wallet_group
from tests.clearing.platform import FEES, Platform, balances, clearing, fund, place, refused, wait_final
from tests.clearing.test_cli import qt
from tests.clearing.test_place_order import acct

NEAR_MAX = MAX_UNITS - 5_000  # 50.00 USD short of the maximum: the 99.95 USD a fill pays would pass it
ONE_SHARE = 10_000


@pytest.mark.parametrize(("overflowing", "symbol"), [("maker", "MSFT"), ("taker", "NVDA")])
async def test_a_fill_that_would_overflow_a_balance_ends_compensated_with_nothing_held(
    shared: Platform, overflowing: str, symbol: str
) -> None:
    nc = shared.nc
    maker, taker = acct("maker"), acct("taker")
    rich = maker if overflowing == "maker" else taker
    buyer = taker if overflowing == "maker" else maker
    seller = maker if buyer == taker else taker
    await fund(nc, rich, USD=NEAR_MAX)
    await fund(nc, buyer, USD=1_000_000)
    await fund(nc, seller, **{symbol: ONE_SHARE})
    accounts = {a: await balances(nc, a) for a in (maker, taker)}
    fees_before = await balances(nc, FEES)
    order = {"instrument": symbol, "price": "100.00", "qty": "1.0000"}
    resting = await place(nc, account=maker, side="SELL" if maker == seller else "BUY", **order)
    assert resting["status"] == "completed" and resting["order_status"] == "new"

    error = await refused(place(nc, account=taker, side="BUY" if taker == buyer else "SELL", **order))

    assert error.code is ErrorCode.AMOUNT_OUT_OF_RANGE, error
    assert error.detail["status"] == "compensated" and error.detail["step"] == "process_fills"
    saga = await wait_final(nc, error.detail["saga_id"])
    assert saga["status"] == "compensated" and saga["error"]["code"] == "amount_out_of_range"
    assert [(c["name"], c["status"]) for c in saga["compensations"]] == [
        ("reverse_fills", "done"), ("cancel_order", "done"), ("release_hold", "done")]
    assert saga["compensations"][0]["result"]["voided"] == [saga["fills"][0]["trade_id"]]
    # the fill is busted: both sides have exactly what they had, nothing is held, the venue took no fee
    assert {a: await balances(nc, a) for a in (maker, taker)} == accounts
    assert await balances(nc, FEES) == fees_before
    breaker = (await clearing(nc, "breakers"))["breakers"][wallet_group(0)]
    assert breaker == {"state": "closed", "failures": 0, "opened_count": 0}


async def test_the_cli_refuses_out_of_range_amounts_locally(shared: Platform) -> None:
    account = acct("cli")
    await fund(shared.nc, account, USD=1_000)

    deposit = await qt(shared, "wallet", "deposit", account, "USD", format_amount("USD", MAX_UNITS + 1))
    order = await qt(shared, "order", "place", account, "AAPL", "BUY", "1", "--price", "10000000000000.00")

    for refused_run in (deposit, order):
        assert refused_run.returncode == 1 and "amount_out_of_range" in refused_run.stderr, refused_run
    assert await balances(shared.nc, account) == {"USD": (1_000, 0)}
