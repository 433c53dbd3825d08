"""A compensation that cannot apply (a bust finding the money spent) parks the saga as `failed` for an
operator, but the compensations after it still run: the order's rest is cancelled and its hold released."""

from __future__ import annotations

import pytest

from contracts.errors import QtError
from tests.clearing.platform import Platform, balances, clearing, place, wait_final, wallet
from tests.clearing.test_crash_recovery import FEE, QUOTE, doomed, two_sided


async def test_a_bust_that_cannot_apply_still_cancels_the_rest_and_releases_the_hold(fresh: Platform) -> None:
    nc = fresh.nc
    await fresh.start("wallet")
    await fresh.start("matching")
    first = await fresh.start("clearing")
    maker, taker, _ = await two_sided(fresh)  # maker rests SELL 2 MSFT @ 412.18
    first.terminate()
    await fresh.start("clearing", instance="-crashy", QT_CRASH_AT="settle")
    # BUY 3 takes the 2 resting and rests 1 @ 415.00; clearing dies right after settle, before the
    # injected failure unwinds it
    order_body = {"saga_id": "spent", "account": taker, "instrument": "MSFT", "side": "BUY", "price": "415.00",
                  "qty": "3.0000", "inject_failure_step": "after:settle"}
    await doomed(fresh, len(fresh.procs) - 1, **order_body)
    await wallet(nc, "withdraw", account=maker, asset="USD", amount=QUOTE - FEE, op_id=f"{maker}:spend")

    await fresh.start("clearing", instance="-after")
    saga = await wait_final(nc, "spent")

    assert saga["status"] == "failed" and saga["error"]["code"] == "compensation_failed", saga
    assert saga["error"]["step"] == "reverse_fills"
    with pytest.raises(QtError) as refused:  # a retry of the order answers what happened, by its own code
        await place(nc, **order_body)
    assert refused.value.code == "compensation_failed", refused.value
    assert [(c["name"], c["status"]) for c in saga["compensations"]] == [
        ("unsettle", "done"), ("reverse_fills", "failed"), ("cancel_order", "done"), ("release_hold", "done")]
    # the trade stands (its bust could not charge the maker back); nothing else is held or resting
    assert await balances(nc, taker) == {"USD": (1_000_000 - QUOTE - FEE, 0), "MSFT": (20_000, 0)}
    order = await clearing(nc, "cancel_order", account=taker, order_id="spent")
    assert order["status"] == "cancelled" and order["remaining"] == "0.0000"
