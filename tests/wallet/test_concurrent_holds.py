"""Two holds that each exceed half the balance: exactly one wins; nothing else changes."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from contracts.errors import ErrorCode, QtError
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call


async def test_two_concurrent_over_half_holds_exactly_one_succeeds(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("holder")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="10000.00", op_id=f"{account}:d")

    results = await asyncio.gather(
        *(wallet_call(nc, "hold", account=account, asset="USD", amount="7000.00",
                      hold_id=f"{account}:h{i}", op_id=f"{account}:h{i}") for i in range(2)),
        return_exceptions=True,
    )

    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1
    assert isinstance(errors[0], QtError) and errors[0].code is ErrorCode.INSUFFICIENT_FUNDS
    assert await balance(nc, account) == ("3000.00", "7000.00")
    assert await event_count(nc, account) == 2  # the deposit and the one hold


async def test_release_and_debit_move_only_the_named_hold(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("trader")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="100.00", op_id=f"{account}:d")
    for name in ("a", "b"):
        await wallet_call(nc, "hold", account=account, asset="USD", amount="40.00",
                          hold_id=f"{account}:{name}", op_id=f"{account}:hold-{name}")

    await wallet_call(nc, "debit", account=account, asset="USD", amount="15.00",
                      hold_id=f"{account}:a", op_id=f"{account}:debit")
    await wallet_call(nc, "release", account=account, asset="USD", hold_id=f"{account}:a",
                      op_id=f"{account}:release")

    assert await balance(nc, account) == ("45.00", "40.00")
    with pytest.raises(QtError) as refused:
        await wallet_call(nc, "debit", account=account, asset="USD", amount="40.01",
                          hold_id=f"{account}:b", op_id=f"{account}:over")
    assert refused.value.code is ErrorCode.INSUFFICIENT_FUNDS
    assert await balance(nc, account) == ("45.00", "40.00")
