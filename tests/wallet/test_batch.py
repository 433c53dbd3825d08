"""`wallet.batch`: many hold/release/settle commands in one message and one group commit, each with
its own op_id and its own result; a refused command refuses only itself."""

from __future__ import annotations

import pytest
from nats.aio.client import Client

from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.wallet import WalletBatchReply
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call


def _hold(account: str, amount: str, name: str) -> dict[str, dict[str, str]]:
    return {"hold": {"account": account, "asset": "USD", "amount": amount, "hold_id": f"{account}:{name}",
                     "op_id": f"{account}:{name}:h"}}


async def _funded(nc: Client, prefix: str, amount: str = "100.00") -> str:
    account = new_account(prefix)
    await wallet_call(nc, "deposit", account=account, asset="USD", amount=amount, op_id=f"{account}:fund")
    return account


async def test_a_batch_applies_every_command_once_with_a_result_each_in_order(
    nc: Client, wallet: InProcessWallet
) -> None:
    buyer, seller = await _funded(nc, "buyer"), new_account("seller")

    reply = await wallet_call(nc, "batch", commands=[
        _hold(buyer, "30.00", "o1"),
        _hold(buyer, "20.00", "o2"),
        {"settle": {"op_id": f"{buyer}:t1", "legs": [
            {"kind": "debit", "account": buyer, "asset": "USD", "amount": "10.00", "hold_id": f"{buyer}:o1"},
            {"kind": "credit", "account": seller, "asset": "USD", "amount": "10.00"},
        ]}},
        {"release": {"account": buyer, "asset": "USD", "hold_id": f"{buyer}:o2", "op_id": f"{buyer}:o2:r"}},
    ])

    results = reply["results"]
    assert WalletBatchReply.model_validate(reply, context={"wire": Wire.JSON}).results[0].ok is not None
    assert [r["ok"]["op_id"] for r in results] == [f"{buyer}:o1:h", f"{buyer}:o2:h", f"{buyer}:t1", f"{buyer}:o2:r"]
    assert all(r.get("error") is None and r["replayed"] is False for r in results)
    assert results[0]["ok"]["changes"][0]["held"] == "30.00"  # JSON wire: decimal strings
    assert await balance(nc, buyer) == ("70.00", "20.00")
    assert await balance(nc, seller) == ("10.00", "0.00")


async def test_one_refused_command_refuses_only_itself(nc: Client, wallet: InProcessWallet) -> None:
    account = await _funded(nc, "partial")

    reply = await wallet_call(nc, "batch", commands=[
        _hold(account, "60.00", "a"), _hold(account, "60.00", "b"), _hold(account, "40.00", "c"),
    ])

    first, refused, third = reply["results"]
    assert first["ok"]["op_id"] == f"{account}:a:h" and third["ok"]["op_id"] == f"{account}:c:h"
    assert refused["error"]["code"] == ErrorCode.INSUFFICIENT_FUNDS and refused.get("ok") is None
    assert await balance(nc, account) == ("0.00", "100.00")
    assert await event_count(nc, account) == 3  # the deposit and two holds: the refusal appended nothing


async def test_a_refused_hold_leaves_its_hold_id_free_and_a_taken_one_is_refused(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = await _funded(nc, "holdid")
    refused, = (await wallet_call(nc, "batch", commands=[_hold(account, "500.00", "a")]))["results"]
    assert refused["error"]["code"] == ErrorCode.INSUFFICIENT_FUNDS

    retry = {"hold": {**_hold(account, "50.00", "a")["hold"], "op_id": f"{account}:a:retry"}}
    taken = {"hold": {**_hold(account, "1.00", "a")["hold"], "op_id": f"{account}:a:again"}}
    opened, again = (await wallet_call(nc, "batch", commands=[retry, taken]))["results"]

    assert opened["ok"]["changes"][0]["held"] == "50.00"
    assert again["error"]["code"] == ErrorCode.HOLD_EXISTS
    assert await balance(nc, account) == ("50.00", "50.00")


async def test_a_hold_on_a_position_read_back_from_disk_holds_exactly_its_amount(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = await _funded(nc, "reload")
    await wallet_call(nc, "batch", commands=[_hold(account, "10.00", "a")])
    await wallet.stop()
    await wallet.start()  # the position cache is gone: the next command loads it from SQLite
    await wallet_call(nc, "batch", commands=[_hold(account, "10.00", "b")])

    release = {"account": account, "asset": "USD", "hold_id": f"{account}:b", "amount": "15.00",
               "op_id": f"{account}:r"}
    over, = (await wallet_call(nc, "batch", commands=[{"release": release}]))["results"]

    assert over["error"]["code"] == ErrorCode.INSUFFICIENT_FUNDS  # hold b has 10.00, not 15.00
    assert await balance(nc, account) == ("80.00", "20.00")


async def test_a_repeated_batch_replays_every_result_and_appends_nothing(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = await _funded(nc, "again")
    commands = [_hold(account, "60.00", "a"), _hold(account, "60.00", "b")]
    first = await wallet_call(nc, "batch", commands=commands)

    second = await wallet_call(nc, "batch", commands=commands)

    assert [r["replayed"] for r in second["results"]] == [True, True]
    assert [r.get("ok") for r in second["results"]] == [r.get("ok") for r in first["results"]]
    assert second["results"][1]["error"] == first["results"][1]["error"]  # a recorded refusal replays too
    assert await event_count(nc, account) == 2
    assert await balance(nc, account) == ("40.00", "60.00")


async def test_an_op_id_twice_in_one_batch_applies_once_and_a_reused_one_conflicts(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = await _funded(nc, "twice")
    hold = _hold(account, "10.00", "a")
    other = {"hold": {**hold["hold"], "amount": "20.00"}}

    same, repeated, conflicting = (await wallet_call(nc, "batch", commands=[hold, hold, other]))["results"]

    assert repeated == {**same, "replayed": True}
    assert conflicting["error"]["code"] == ErrorCode.IDEMPOTENCY_CONFLICT
    assert await balance(nc, account) == ("90.00", "10.00")
    assert await event_count(nc, account) == 2


@pytest.mark.parametrize("item", [
    {},  # no command
    {"hold": {"account": "x", "asset": "USD", "amount": "1.00", "hold_id": "h", "op_id": "o"},
     "release": {"account": "x", "asset": "USD", "hold_id": "h", "op_id": "r"}},  # two commands
    {"hold": {"account": "x", "asset": "USD", "amount": "1.001", "hold_id": "h", "op_id": "o"}},  # bad amount
    {"deposit": {"account": "x", "asset": "USD", "amount": "1.00", "op_id": "o"}},  # not batchable
])
async def test_a_malformed_item_refuses_the_whole_batch_unapplied(
    nc: Client, wallet: InProcessWallet, item: dict[str, object]
) -> None:
    account = await _funded(nc, "malformed")

    with pytest.raises(QtError) as refused:
        await wallet_call(nc, "batch", commands=[_hold(account, "10.00", "ok"), item])

    assert refused.value.code in (ErrorCode.VALIDATION, ErrorCode.INVALID_AMOUNT)
    assert await balance(nc, account) == ("100.00", "0.00")
    assert await event_count(nc, account) == 1


async def test_an_empty_or_oversized_batch_is_refused(nc: Client, wallet: InProcessWallet) -> None:
    account = await _funded(nc, "size")
    for commands in ([], [_hold(account, "0.01", f"h{i}") for i in range(257)]):
        with pytest.raises(QtError) as refused:
            await wallet_call(nc, "batch", commands=commands)
        assert refused.value.code is ErrorCode.VALIDATION
    assert await balance(nc, account) == ("100.00", "0.00")
