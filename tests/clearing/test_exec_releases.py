"""Holds of orders the engine cancels on its own are released from EXEC; a poisoned report goes to DLQ."""

from __future__ import annotations

from typing import Any

import pytest
from nats.js.errors import NotFoundError

from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.matching import exec_reports
from contracts.subjects import DLQ_STREAM, EXEC_STREAM, dlq_subject, exec_subject, matching_subject, orders_subject
from mesh.rpc import call
from nodes.matching.engine import CANCEL, command_key
from nodes.matching.journal import journal_message
from tests.clearing.platform import Platform, account_on, balances, clearing, fund, place
from tests.clearing.test_place_order import acct
from tests.polling import eventually


async def wait_balance(platform: Platform, account: str, asset: str, expected: tuple[int, int]) -> None:
    """Poll until (available, held) of `asset` is `expected` (EXEC is consumed asynchronously)."""
    async def held() -> tuple[int, int] | None:
        return (await balances(platform.nc, account)).get(asset)

    await eventually(held, lambda got: got == expected, what=f"{account} {asset} == {expected}")


async def test_self_trade_prevention_cancelling_the_resting_order_releases_its_hold(shared: Platform) -> None:
    nc = shared.nc
    trader = acct("stp")
    await fund(nc, trader, USD=1_000_000, AAPL=50_000)
    resting = await place(nc, account=trader, instrument="AAPL", side="SELL", price="190.00", qty="1.0000")
    assert (await balances(nc, trader))["AAPL"] == (40_000, 10_000)
    # Cancel-oldest: the engine cancels the resting SELL instead of trading with it; the BUY rests.
    buy = await place(nc, account=trader, instrument="AAPL", side="BUY", price="190.00", qty="1.0000", stp="co")
    assert buy["order_status"] == "new" and buy["fills"] == []
    await wait_balance(shared, trader, "AAPL", (50_000, 0))
    await clearing(nc, "cancel_order", account=trader, order_id=buy["order_id"])
    assert (await balances(nc, trader))["USD"] == (1_000_000, 0)
    assert resting["order_id"] != buy["order_id"]


async def test_an_ioc_remainder_is_released_by_the_saga(shared: Platform) -> None:
    nc = shared.nc
    trader = acct("ioc")
    await fund(nc, trader, USD=1_000_000)
    out = await place(nc, account=trader, instrument="AAPL", side="BUY", price="50.00", qty="1.0000", tif="IOC")
    assert out["status"] == "completed" and out["order_status"] == "cancelled" and out["hold_left"] == "0.00"
    assert (await balances(nc, trader))["USD"] == (1_000_000, 0)


async def test_every_cancel_of_one_journal_entry_releases_its_own_hold_even_when_another_fails(
        fresh: Platform) -> None:
    nc = fresh.nc
    fresh.partitions = 2
    wallets = await fresh.start_wallets()
    await fresh.start("matching")
    await fresh.start("clearing")
    # the first trader's partition goes down before the cancels: its release fails, the second's must not wait
    traders = [account_on(0, 2, "entry-a"), account_on(1, 2, "entry-b")]
    orders = []
    for trader in traders:
        await fund(nc, trader, 2, USD=1_000_000)
        orders.append(await place(nc, account=trader, instrument="AAPL", side="BUY", price="100.00", qty="1.0000"))
        assert (await balances(nc, trader, 2))["USD"] == (1_000_000 - 10_005, 10_005)
    wallets[0].kill9()
    # Two cancels sent to matching directly that share one journal entry: one EXEC message holds both reports.
    cancels = [{"op": CANCEL, "order_id": order["order_id"], "account": trader}
               for order, trader in zip(orders, traders, strict=True)]
    payload, msg_id = journal_message([(command_key(entry), entry) for entry in cancels])
    await nc.jetstream().publish(orders_subject("AAPL"), payload, headers={"Nats-Msg-Id": msg_id})

    async def second() -> tuple[int, int]:
        return (await balances(nc, traders[1], 2))["USD"]

    await eventually(second, lambda usd: usd == (1_000_000, 0), what="the second cancel's hold released")
    js = nc.jetstream()
    last = await js.get_last_msg(EXEC_STREAM, exec_subject("AAPL"))
    cancelled = [(r["kind"], r["order_id"]) for r in exec_reports(last.data)]
    assert cancelled == [("cancelled", order["order_id"]) for order in orders]
    # the first release keeps failing: the entry is parked, and its error names the report that failed
    parked = await eventually(lambda: js.get_last_msg(DLQ_STREAM, dlq_subject("EXEC", "clearing-exec")),
                              ignoring=(NotFoundError,), what="the entry dead-lettered")
    assert parked.headers is not None
    error = parked.headers["Qt-Last-Error"]
    assert f"report 0 (order {orders[0]['order_id']}) of 2 failed" in error, error
    assert orders[1]["order_id"] not in error


async def test_a_release_that_keeps_failing_is_parked_in_dlq_and_replayed_once_fixed(fresh: Platform) -> None:
    nc = fresh.nc
    wallet_proc = await fresh.start("wallet")
    await fresh.start("matching")
    await fresh.start("clearing")
    trader = acct("dlq")
    await fund(nc, trader, USD=1_000_000)
    order = await place(nc, account=trader, instrument="AAPL", side="BUY", price="100.00", qty="1.0000")
    js = nc.jetstream()
    subject = dlq_subject("EXEC", "clearing-exec")
    wallet_proc.kill9()

    # An operator cancels in the engine directly while the wallet is down: the hold cannot be released.
    await call(nc, matching_subject("AAPL", "cancel"), {"order_id": order["order_id"], "account": trader,
                                                "instrument": "AAPL"}, wire=Wire.JSON)
    parked = await eventually(lambda: js.get_last_msg(DLQ_STREAM, subject), ignoring=(NotFoundError,),
                              what="the failing report dead-lettered")
    assert parked.headers is not None and parked.headers["Qt-Deliveries"] == "5"
    assert "wallet" in parked.headers["Qt-Last-Error"]

    await fresh.start("wallet")
    assert (await balances(nc, trader))["USD"] == (1_000_000 - 10_005, 10_005)  # still held
    async def replay() -> dict[str, Any] | None:
        try:
            return await clearing(nc, "dlq_replay", seq=parked.seq)
        except QtError as exc:  # until the breaker lets a trial call through to the wallet that is back
            if exc.code is ErrorCode.UNAVAILABLE:
                return None
            raise

    replayed = await eventually(replay, every_s=0.5, what="the replay through the wallet that is back")
    assert replayed is not None
    assert replayed["outcome"] == "replayed"
    with pytest.raises(QtError) as gone:  # replayed means no longer parked
        await clearing(nc, "dlq_replay", seq=parked.seq)
    assert gone.value.code is ErrorCode.NOT_FOUND
    assert (await balances(nc, trader))["USD"] == (1_000_000, 0)
