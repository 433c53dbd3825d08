"""50 concurrent deposits add up exactly, and survive rebuild and restart."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client

from tests.conftest import InProcessWallet
from tests.wallet.client import balance, new_account, wallet_call


async def test_fifty_concurrent_deposits_sum_exactly_and_survive_rebuild_and_restart(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = new_account("alice")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="10000.00", op_id=f"{account}:open")

    await asyncio.gather(*(
        wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:{i}")
        for i in range(50)
    ))
    assert await balance(nc, account) == ("10050.00", "0.00")

    rebuilt = await wallet_call(nc, "rebuild", account=account)
    assert rebuilt["identical"] is True
    assert rebuilt["events_replayed"] == 51
    assert rebuilt["after"][0]["available"] == "10050.00"
    assert await balance(nc, account) == ("10050.00", "0.00")

    await wallet.stop()
    await wallet.start()
    assert await balance(nc, account) == ("10050.00", "0.00")
    assert (await wallet_call(nc, "verify", account=account))["ok"] is True
