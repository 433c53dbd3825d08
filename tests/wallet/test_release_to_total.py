"""Release down to `total_debits`: any snapshot of an order, in any order, converges on one total."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from contracts.errors import ErrorCode, QtError
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call


async def _hold(nc: Client, account: str, amount: str, hold_id: str) -> None:
    await wallet_call(nc, "deposit", account=account, asset="USD", amount=amount, op_id=f"{hold_id}:d")
    await wallet_call(nc, "hold", account=account, asset="USD", amount=amount, hold_id=hold_id, op_id=f"{hold_id}:h")


async def test_stale_and_fresh_snapshots_release_the_same_total_in_any_order(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = new_account("rt")
    hold = f"{account}:o"
    await _hold(nc, account, "100.00", hold)
    # A fresh snapshot (order final, 30.00 of fills) releases 70.00 before a fill is even settled.
    await wallet_call(nc, "release", account=account, asset="USD", hold_id=hold, total_debits="30.00", op_id="r1")
    assert await balance(nc, account) == ("70.00", "30.00")
    # A stale snapshot (the order still needed 60.00) arrives late: it releases nothing more.
    await wallet_call(nc, "release", account=account, asset="USD", hold_id=hold, total_debits="60.00", op_id="r2")
    assert await balance(nc, account) == ("70.00", "30.00")
    # The unsettled fill still finds its money in the hold.
    await wallet_call(nc, "debit", account=account, asset="USD", amount="30.00", hold_id=hold, op_id="d1")
    assert await balance(nc, account) == ("70.00", "0.00")
    # The final snapshot again: a no-op, the hold is exhausted.
    before = await event_count(nc, account)
    await wallet_call(nc, "release", account=account, asset="USD", hold_id=hold, total_debits="30.00", op_id="r3")
    assert await event_count(nc, account) == before


async def test_release_takes_amount_or_total_debits_not_both(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("rt")
    await _hold(nc, account, "10.00", f"{account}:o")
    with pytest.raises(QtError) as both:
        await wallet_call(nc, "release", account=account, asset="USD", hold_id=f"{account}:o", amount="1.00",
                          total_debits="1.00", op_id="x")
    assert both.value.code is ErrorCode.VALIDATION
    with pytest.raises(QtError) as debit_leg:
        await wallet_call(nc, "settle", op_id="y", legs=[
            {"kind": "debit", "account": account, "asset": "USD", "hold_id": f"{account}:o", "amount": "1.00",
             "total_debits": "1.00"}])
    assert debit_leg.value.code is ErrorCode.VALIDATION
    assert await balance(nc, account) == ("0.00", "10.00")


async def test_a_hold_for_an_account_that_never_had_money_is_unknown_account(
    nc: Client, wallet: InProcessWallet
) -> None:
    ghost = new_account("ghost")
    with pytest.raises(QtError) as refused:
        await wallet_call(nc, "hold", account=ghost, asset="USD", amount="1.00", hold_id=f"{ghost}:o", op_id="g1")
    assert refused.value.code is ErrorCode.UNKNOWN_ACCOUNT
    assert await event_count(nc, ghost) == 0
    # An existing account holding an asset it never had is short of funds, not unknown.
    known = new_account("known")
    await wallet_call(nc, "deposit", account=known, asset="USD", amount="1.00", op_id=f"{known}:d")
    with pytest.raises(QtError) as short:
        await wallet_call(nc, "hold", account=known, asset="BTC", amount="1", hold_id=f"{known}:o", op_id="k1")
    assert short.value.code is ErrorCode.INSUFFICIENT_FUNDS
