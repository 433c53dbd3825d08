"""Bad input at clearing: precise codes, and nothing changes (no hold, no order, no saga left running)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from contracts.errors import ErrorCode
from contracts.subjects import SAGAS_BUCKET
from nodes.clearing import saga as machine
from nodes.clearing.store import decode, encode
from tests.clearing.platform import Platform, balances, clearing, fund, place, refused, wait_final
from tests.clearing.test_place_order import acct

GOOD: dict[str, Any] = {"instrument": "AAPL", "side": "BUY", "price": "100.00", "qty": "1.0000"}


@pytest.mark.parametrize(("change", "code"), [
    ({"instrument": "DOGE"}, ErrorCode.UNKNOWN_INSTRUMENT),
    ({"price": "100.005"}, ErrorCode.INVALID_AMOUNT),  # more decimals than USD has
    ({"price": "67500.00", "instrument": "BTC-USD", "qty": "0.00001"}, None),  # control: a valid order
    ({"price": "0.01", "instrument": "BTC-USD", "qty": "0.00001"}, ErrorCode.INVALID_QTY),  # worth < 1 cent
    ({"instrument": "ETH-USD", "price": "3450.05", "qty": "0.0100"}, ErrorCode.PRICE_OFF_TICK),  # tick 0.10
    ({"instrument": "ETH-USD", "price": "3450.10", "qty": "0.0100"}, None),
    ({"qty": "1.0050"}, ErrorCode.QTY_OFF_STEP),
    ({"qty": "0"}, ErrorCode.INVALID_AMOUNT),
    ({"qty": "-1.0000"}, ErrorCode.INVALID_AMOUNT),
    ({"type": "MARKET"}, ErrorCode.MARKET_WITH_PRICE),
    ({"type": "MARKET", "price": None, "max_quote": None}, ErrorCode.VALIDATION),  # a MARKET BUY needs a bound
    ({"price": 100.0}, ErrorCode.INVALID_AMOUNT),  # float money
    ({"surprise": 1}, ErrorCode.VALIDATION),
    ({"inject_failure_step": "bogus"}, ErrorCode.VALIDATION),
    ({"saga_id": "has.dots"}, ErrorCode.VALIDATION),
])
async def test_malformed_orders_are_refused_before_any_saga(
    shared: Platform, change: dict[str, Any], code: ErrorCode | None
) -> None:
    nc = shared.nc
    account = acct("bad")
    await fund(nc, account, USD=100_000_000)
    body = {k: v for k, v in {**GOOD, **change, "account": account}.items() if v is not None}
    if code is None:
        out = await place(nc, **body)
        assert out["status"] == "completed"
        await clearing(nc, "cancel_order", account=account, order_id=out["order_id"])
        return
    error = await refused(place(nc, **body))
    assert error.code is code, error
    assert await balances(nc, account) == {"USD": (100_000_000, 0)}
    assert (await clearing(nc, "saga_list", account=account))["sagas"] == []


async def test_unknown_account_and_insufficient_funds_are_refused_at_reserve_funds(shared: Platform) -> None:
    nc = shared.nc
    ghost = acct("ghost")
    error = await refused(place(nc, account=ghost, **GOOD))
    assert error.code is ErrorCode.UNKNOWN_ACCOUNT
    assert await balances(nc, ghost) == {}

    poor = acct("poor")
    await fund(nc, poor, USD=5_000)  # 50.00 USD, the order needs 100.05
    error = await refused(place(nc, account=poor, **GOOD))
    assert error.code is ErrorCode.INSUFFICIENT_FUNDS
    saga = await wait_final(nc, error.detail["saga_id"])
    assert saga["status"] == "failed" and saga["compensations"] == []
    assert [s["status"] for s in saga["steps"]] == ["failed", "pending", "pending", "pending"]
    assert await balances(nc, poor) == {"USD": (5_000, 0)}


async def test_a_reused_saga_id_answers_the_first_saga_or_a_conflict(shared: Platform) -> None:
    nc = shared.nc
    account = acct("idem")
    await fund(nc, account, USD=1_000_000)
    saga_id = f"idem-{account}"
    first = await place(nc, account=account, saga_id=saga_id, **GOOD)
    again = await place(nc, account=account, saga_id=saga_id, **GOOD)
    assert again == first
    assert await balances(nc, account) == {"USD": (1_000_000 - 10_005, 10_005)}  # one hold, not two
    error = await refused(place(nc, account=account, saga_id=saga_id, **{**GOOD, "price": "101.00"}))
    assert error.code is ErrorCode.IDEMPOTENCY_CONFLICT
    await clearing(nc, "cancel_order", account=account, order_id=first["order_id"])


async def test_a_taken_saga_id_whose_record_is_not_readable_is_unavailable_and_places_nothing(
    shared: Platform,
) -> None:
    """The create finds the id taken but the read finds no record: on a cluster, the replica that answered
    the read lags behind the leader (here a KV delete marker stands in for it). The caller is told to retry
    (`unavailable`) after the duplicate wait, not that clearing failed (`internal`)."""
    nc = shared.nc
    account = acct("unread")
    await fund(nc, account, USD=1_000_000)
    saga_id = f"unread-{account}"
    sagas = await nc.jetstream().key_value(SAGAS_BUCKET)
    await sagas.put(saga_id, b"\x80")
    await sagas.delete(saga_id)

    error = await refused(place(nc, timeout=20, account=account, saga_id=saga_id, **GOOD))

    assert error.code is ErrorCode.UNAVAILABLE and error.detail == {"saga_id": saga_id}
    assert await balances(nc, account) == {"USD": (1_000_000, 0)}


async def test_a_cancel_that_reads_its_saga_before_the_engine_waits_then_is_unavailable(shared: Platform) -> None:
    """The place reply goes out before the saga's final record is written, so a cancel sent on it can read
    a record still short of the engine (here written back by hand). It waits for the record to catch up;
    if it never does, the cancel is `unavailable` and releases nothing."""
    nc = shared.nc
    account = acct("early")
    await fund(nc, account, USD=1_000_000)
    out = await place(nc, account=account, **GOOD)
    await wait_final(nc, out["saga_id"])
    sagas = await nc.jetstream().key_value(SAGAS_BUCKET)
    final = (await sagas.get(out["saga_id"])).value
    done = decode(final)
    early = machine.new_saga(done.saga_id, done.request, done.request_hash, (done.hold_asset, done.hold_amount),
                             done.created_ns)
    early.owner, early.lease_until_ms = done.owner, done.lease_until_ms
    held = await balances(nc, account)
    assert held == {"USD": (1_000_000 - 10_005, 10_005)}

    await sagas.put(out["saga_id"], encode(early))
    error = await refused(clearing(nc, "cancel_order", account=account, order_id=out["order_id"]))
    assert error.code is ErrorCode.UNAVAILABLE and error.detail == {"saga_id": out["saga_id"]}
    assert await balances(nc, account) == held

    cancel = asyncio.create_task(clearing(nc, "cancel_order", account=account, order_id=out["order_id"]))
    await asyncio.sleep(0.5)  # the cancel has read the early record by now
    assert not cancel.done()
    await sagas.put(out["saga_id"], final)
    cancelled = await cancel
    assert cancelled["status"] == "cancelled"
    assert await balances(nc, account) == {"USD": (1_000_000, 0)}


async def test_cancel_of_another_accounts_or_an_unknown_order_changes_nothing(shared: Platform) -> None:
    nc = shared.nc
    owner, stranger = acct("owner"), acct("stranger")
    await fund(nc, owner, USD=1_000_000)
    await fund(nc, stranger, USD=1_000_000)
    out = await place(nc, account=owner, **GOOD)
    held = await balances(nc, owner)
    assert held["USD"][1] == 10_005

    error = await refused(clearing(nc, "cancel_order", account=stranger, order_id=out["order_id"]))
    assert error.code is ErrorCode.UNKNOWN_ORDER
    error = await refused(clearing(nc, "cancel_order", account=owner, order_id="no-such-order"))
    assert error.code is ErrorCode.UNKNOWN_ORDER
    error = await refused(clearing(nc, "cancel_order", account=owner, order_id="has.dot"))
    assert error.code is ErrorCode.VALIDATION
    assert await balances(nc, owner) == held

    cancelled = await clearing(nc, "cancel_order", account=owner, order_id=out["order_id"])
    assert cancelled["status"] == "cancelled"
    assert await balances(nc, owner) == {"USD": (1_000_000, 0)}
    # Cancelling again is harmless: the final state, and the hold released exactly once.
    again = await clearing(nc, "cancel_order", account=owner, order_id=out["order_id"])
    assert again["status"] == "cancelled"
    assert await balances(nc, owner) == {"USD": (1_000_000, 0)}
