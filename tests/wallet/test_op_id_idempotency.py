"""A repeated op_id returns the first reply and appends nothing."""

from __future__ import annotations

import asyncio

import pytest
from nats.aio.client import Client

from contracts.codec import Wire, encode, loads
from contracts.errors import ErrorCode, QtError
from mesh.rpc import REPLAYED_HEADER
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call


async def test_same_op_id_twice_gives_one_event_and_the_same_reply(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("idem")
    body = {"account": account, "asset": "USD", "amount": "5.00", "op_id": f"{account}:once"}

    first = await nc.request("wallet.p0.deposit", encode(body, Wire.JSON), timeout=5)
    second = await nc.request("wallet.p0.deposit", encode(body, Wire.JSON), timeout=5)

    assert loads(first.data) == loads(second.data)
    assert (second.headers or {}).get(REPLAYED_HEADER) == "true"
    assert await event_count(nc, account) == 1
    assert await balance(nc, account) == ("5.00", "0.00")


async def test_same_op_id_sent_concurrently_applies_once(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("idem")
    replies = await asyncio.gather(*(
        wallet_call(nc, "deposit", account=account, asset="USD", amount="2.50", op_id=f"{account}:dup")
        for _ in range(20)
    ))

    assert all(reply == replies[0] for reply in replies)
    assert await event_count(nc, account) == 1
    assert await balance(nc, account) == ("2.50", "0.00")


async def test_a_refusal_is_recorded_and_replayed_for_its_op_id(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("idem")
    with pytest.raises(QtError) as first:
        await wallet_call(nc, "withdraw", account=account, asset="USD", amount="1.00", op_id=f"{account}:w")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="10.00", op_id=f"{account}:d")

    with pytest.raises(QtError) as again:
        await wallet_call(nc, "withdraw", account=account, asset="USD", amount="1.00", op_id=f"{account}:w")

    assert first.value.code is again.value.code is ErrorCode.INSUFFICIENT_FUNDS
    assert await balance(nc, account) == ("10.00", "0.00")


async def test_same_op_id_with_another_payload_is_refused(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("idem")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:x")

    with pytest.raises(QtError) as refused:
        await wallet_call(nc, "deposit", account=account, asset="USD", amount="2.00", op_id=f"{account}:x")

    assert refused.value.code is ErrorCode.IDEMPOTENCY_CONFLICT
    assert await balance(nc, account) == ("1.00", "0.00")
    assert await event_count(nc, account) == 1
