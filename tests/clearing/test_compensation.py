"""inject_failure_step at every step and right after each: the saga unwinds to where it started."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from contracts.codec import Wire
from contracts.subjects import matching_subject
from mesh.rpc import call
from tests.clearing.platform import FEES, Platform, balances, clearing, fund, place, totals, wait_final
from tests.clearing.test_place_order import acct

STEPS = ("reserve_funds", "submit_order", "process_fills", "settle")


@pytest.mark.parametrize("inject", [*STEPS, *(f"after:{s}" for s in STEPS)])
async def test_an_injected_failure_compensates_everything(shared: Platform, inject: str) -> None:
    nc = shared.nc
    maker, taker = acct("maker"), acct("taker")
    await fund(nc, maker, NVDA=30_000)  # 3 shares
    await fund(nc, taker, USD=1_000_000)
    sell = await place(nc, account=maker, instrument="NVDA", side="SELL", price="825.50", qty="1.0000")
    assert sell["status"] == "completed"
    try:
        await _fail_and_check(nc, inject, maker, taker)
    finally:  # the module shares one book: leave nothing resting for the next test
        await clearing(nc, "cancel_order", account=maker, order_id=sell["order_id"])


async def _fail_and_check(nc: Client, inject: str, maker: str, taker: str) -> None:
    accounts = [maker, taker, FEES]
    before = await totals(nc, accounts)
    maker_before, taker_before = await balances(nc, maker), await balances(nc, taker)

    # Crosses the 1 share resting and would rest the other 1 share at 826.00.
    out = await place(nc, account=taker, instrument="NVDA", side="BUY", price="826.00", qty="2.0000",
                      inject_failure_step=inject)

    assert out["status"] == "compensated", out
    assert out["error"]["code"] == "injected_failure" and out["hold_left"] == "0.00"
    saga = await wait_final(nc, out["saga_id"])  # the final record may trail the reply
    comps = {c["name"]: c["status"] for c in saga["compensations"]}
    assert set(comps.values()) <= {"done"}
    assert await totals(nc, accounts) == before  # nothing created or lost, fees included
    taker_after = await balances(nc, taker)
    assert taker_after["USD"] == taker_before["USD"] and taker_after.get("NVDA", (0, 0)) == (0, 0)
    if inject == "reserve_funds":  # it never ran: there is nothing to undo
        assert comps == {}
        return
    if inject in ("after:reserve_funds", "submit_order"):  # never reached the engine
        assert set(comps) == {"release_hold"}
        return
    order = await call(nc, matching_subject("NVDA", "order"), {"instrument": "NVDA", "order_id": out["order_id"]},
                       wire=Wire.JSON)
    assert order["status"] == "cancelled" and order["remaining"] == "0.0000"
    assert len(order["fills"]) == 1  # the engine's trade stands in its history; the money is busted
    assert "reverse_fills" in comps and "cancel_order" in comps
    # The busted share is back with the maker as available; its hold went with the filled order.
    maker_after = await balances(nc, maker)
    assert maker_after["NVDA"] == (maker_before["NVDA"][0] + 10_000, 0)
    assert maker_after.get("USD", (0, 0)) == (0, 0)
