"""Clearing's wallet commands against a real wallet: commands queued together go as one `wallet.batch`,
each answered on its own; a malformed one (which makes the wallet refuse a whole batch) is sent again
alone so it fails only itself; a release of a hold that never existed frees nothing and is no error."""

from __future__ import annotations

import asyncio

from nats.aio.client import Client
from prometheus_client import CollectorRegistry

from contracts.errors import ErrorCode, QtError
from contracts.subjects import wallet_group
from nodes.clearing.wallet_commands import WalletCommands
from nodes.runtime.batcher import BatchMetrics
from nodes.runtime.client import ServiceClient
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call


def _hold(account: str, amount: int, name: str) -> dict[str, object]:
    return {"account": account, "asset": "USD", "amount": amount, "hold_id": f"{account}:{name}",
            "op_id": f"{account}:{name}:h"}


async def _funded(nc: Client) -> str:
    account = new_account("cmds")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="100.00", op_id=f"{account}:fund")
    return account


async def test_a_malformed_command_fails_alone_and_its_batch_neighbours_apply(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = await _funded(nc)
    registry = CollectorRegistry()
    commands = WalletCommands(ServiceClient(nc, wallet_group(0)), metrics=BatchMetrics(registry))

    good, bad, poor = await asyncio.gather(
        commands.hold(_hold(account, 3_000, "a")),
        commands.hold(_hold(account, 0, "b")),  # zero: refused by the contract, the whole batch with it
        commands.hold(_hold(account, 9_000, "c")),  # a business refusal: its own result
        return_exceptions=True,
    )

    assert isinstance(good, dict) and good["op_id"] == f"{account}:a:h"
    assert isinstance(bad, QtError) and bad.code is ErrorCode.INVALID_AMOUNT
    assert isinstance(poor, QtError) and poor.code is ErrorCode.INSUFFICIENT_FUNDS
    assert registry.get_sample_value("qt_batch_items_count", {"batcher": "wallet.p0.batch"}) == 1
    assert await balance(nc, account) == ("70.00", "30.00")
    assert await event_count(nc, account) == 2  # the deposit and hold a


async def test_releasing_a_hold_that_never_existed_is_no_error_and_moves_nothing(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = await _funded(nc)
    commands = WalletCommands(ServiceClient(nc, wallet_group(0)))

    await commands.release_down_to(account, "USD", f"{account}:never", 0, f"{account}:r")

    assert await balance(nc, account) == ("100.00", "0.00")
    assert await event_count(nc, account) == 1
