"""`settle` applies several legs atomically: all of them, or none."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from contracts.errors import ErrorCode, QtError
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call


async def _fund_and_hold(nc: Client, account: str, asset: str, amount: str, hold_id: str) -> None:
    await wallet_call(nc, "deposit", account=account, asset=asset, amount=amount, op_id=f"{hold_id}:d")
    await wallet_call(nc, "hold", account=account, asset=asset, amount=amount, hold_id=hold_id,
                      op_id=f"{hold_id}:h")


async def test_a_trade_settles_both_sides_and_the_fee_in_one_command(nc: Client, wallet: InProcessWallet) -> None:
    buyer, seller, venue = new_account("buyer"), new_account("seller"), new_account("fees")
    await _fund_and_hold(nc, buyer, "USD", "1000.00", f"{buyer}:o1")
    await _fund_and_hold(nc, seller, "AAPL", "5.0000", f"{seller}:o2")

    await wallet_call(nc, "settle", op_id=f"{buyer}:t1", legs=[
        {"kind": "debit", "account": buyer, "asset": "USD", "amount": "937.57", "hold_id": f"{buyer}:o1"},
        {"kind": "credit", "account": buyer, "asset": "AAPL", "amount": "5.0000"},
        {"kind": "debit", "account": seller, "asset": "AAPL", "amount": "5.0000", "hold_id": f"{seller}:o2"},
        {"kind": "credit", "account": seller, "asset": "USD", "amount": "936.63"},
        {"kind": "credit", "account": venue, "asset": "USD", "amount": "0.94"},
        {"kind": "release", "account": buyer, "asset": "USD", "hold_id": f"{buyer}:o1"},
    ])

    assert await balance(nc, buyer) == ("62.43", "0.00")
    assert await balance(nc, buyer, "AAPL") == ("5.0000", "0.0000")
    assert await balance(nc, seller, "AAPL") == ("0.0000", "0.0000")
    assert await balance(nc, seller) == ("936.63", "0.00")
    assert await balance(nc, venue) == ("0.94", "0.00")


async def test_one_failing_leg_rolls_back_every_leg(nc: Client, wallet: InProcessWallet) -> None:
    buyer, seller = new_account("buyer"), new_account("seller")
    await _fund_and_hold(nc, buyer, "USD", "100.00", f"{buyer}:o1")
    events_before = await event_count(nc, buyer)

    with pytest.raises(QtError) as refused:
        await wallet_call(nc, "settle", op_id=f"{buyer}:t1", legs=[
            {"kind": "debit", "account": buyer, "asset": "USD", "amount": "50.00", "hold_id": f"{buyer}:o1"},
            {"kind": "credit", "account": seller, "asset": "USD", "amount": "50.00"},
            {"kind": "debit", "account": seller, "asset": "AAPL", "amount": "1.0000", "hold_id": "no-such-hold"},
        ])

    assert refused.value.code is ErrorCode.UNKNOWN_HOLD
    assert await balance(nc, buyer) == ("0.00", "100.00")
    assert await balance(nc, seller) == ("0.00", "0.00")
    assert await event_count(nc, buyer) == events_before


async def test_releasing_an_exhausted_hold_is_a_no_op(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("rel")
    await _fund_and_hold(nc, account, "USD", "10.00", f"{account}:o")
    await wallet_call(nc, "release", account=account, asset="USD", hold_id=f"{account}:o", op_id=f"{account}:r1")

    second = await wallet_call(nc, "release", account=account, asset="USD", hold_id=f"{account}:o",
                               op_id=f"{account}:r2")

    assert second["event_ids"] == []
    assert await balance(nc, account) == ("10.00", "0.00")


async def test_a_hold_id_cannot_be_reused(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("reuse")
    await _fund_and_hold(nc, account, "USD", "10.00", f"{account}:o")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="10.00", op_id=f"{account}:d2")

    with pytest.raises(QtError) as refused:
        await wallet_call(nc, "hold", account=account, asset="USD", amount="1.00", hold_id=f"{account}:o",
                          op_id=f"{account}:h2")

    assert refused.value.code is ErrorCode.HOLD_EXISTS
    assert await balance(nc, account) == ("10.00", "10.00")
