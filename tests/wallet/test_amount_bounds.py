"""No balance or hold can pass MAX_UNITS: a deposit or credit that would is refused with
`amount_out_of_range`, deterministically, and writes nothing."""

from __future__ import annotations

import asyncio
import sqlite3

import msgpack
import pytest
from nats.aio.client import Client

from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.money import MAX_UNITS, format_amount
from mesh.rpc import QT_ERROR_HEADER
from nodes.wallet.node import db_path
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call

NEAR_MAX = format_amount("USD", MAX_UNITS - 100)  # one dollar short of the maximum


async def _refused(call: object) -> QtError:
    try:
        await call  # type: ignore[misc]
    except QtError as exc:
        return exc
    raise AssertionError("expected a refusal")


@pytest.mark.parametrize("wire", [Wire.JSON, Wire.MSGPACK])
async def test_a_deposit_past_the_maximum_is_refused_and_changes_nothing(
    nc: Client, wallet: InProcessWallet, wire: Wire
) -> None:
    account = new_account("rich")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount=NEAR_MAX, op_id=f"{account}:1")
    before = (await balance(nc, account), await event_count(nc, account))

    amount: object = "1.01" if wire is Wire.JSON else 101
    refused = await _refused(wallet_call(nc, "deposit", wire, account=account, asset="USD", amount=amount,
                                         op_id=f"{account}:2"))

    assert refused.code is ErrorCode.AMOUNT_OUT_OF_RANGE
    assert refused.detail["max"] == format_amount("USD", MAX_UNITS)
    assert (await balance(nc, account), await event_count(nc, account)) == before
    # deterministic: the refusal is recorded against its op_id, and exactly the maximum is still fine
    again = await _refused(wallet_call(nc, "deposit", wire, account=account, asset="USD", amount=amount,
                                       op_id=f"{account}:2"))
    assert again.code is ErrorCode.AMOUNT_OUT_OF_RANGE
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:3")
    assert await balance(nc, account) == (format_amount("USD", MAX_UNITS), "0.00")


async def test_held_money_counts_and_moving_it_never_overflows(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("held")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount=NEAR_MAX, op_id=f"{account}:1")
    await wallet_call(nc, "hold", account=account, asset="USD", amount=NEAR_MAX, hold_id=f"{account}:h",
                      op_id=f"{account}:h")

    refused = await _refused(wallet_call(nc, "deposit", account=account, asset="USD", amount="1.01",
                                         op_id=f"{account}:2"))

    assert refused.code is ErrorCode.AMOUNT_OUT_OF_RANGE  # available is 0, but available + held would pass it
    await wallet_call(nc, "release", account=account, asset="USD", hold_id=f"{account}:h", op_id=f"{account}:r")
    assert await balance(nc, account) == (NEAR_MAX, "0.00")


async def test_a_settle_whose_credit_would_pass_the_maximum_applies_no_leg(
    nc: Client, wallet: InProcessWallet
) -> None:
    buyer, seller = new_account("buyer"), new_account("whale")
    await wallet_call(nc, "deposit", account=buyer, asset="USD", amount="500.00", op_id=f"{buyer}:d")
    await wallet_call(nc, "hold", account=buyer, asset="USD", amount="500.00", hold_id=f"{buyer}:o",
                      op_id=f"{buyer}:h")
    await wallet_call(nc, "deposit", account=seller, asset="USD", amount=NEAR_MAX, op_id=f"{seller}:d")
    before = [await balance(nc, buyer), await balance(nc, seller), await event_count(nc, buyer)]

    refused = await _refused(wallet_call(nc, "settle", op_id=f"{buyer}:t", legs=[
        {"kind": "debit", "account": buyer, "asset": "USD", "amount": "500.00", "hold_id": f"{buyer}:o"},
        {"kind": "credit", "account": seller, "asset": "USD", "amount": "500.00"},
    ]))

    assert refused.code is ErrorCode.AMOUNT_OUT_OF_RANGE
    assert [await balance(nc, buyer), await balance(nc, seller), await event_count(nc, buyer)] == before


@pytest.mark.parametrize(("endpoint", "body"), [
    ("deposit", {"asset": "USD", "amount": MAX_UNITS + 1}),
    ("deposit", {"asset": "USD", "amount": 2**64 - 1}),
    ("withdraw", {"asset": "USD", "amount": 2**63}),
    ("hold", {"asset": "USD", "amount": MAX_UNITS + 1, "hold_id": "h"}),
    ("settle", {"legs": [{"kind": "credit", "account": "x", "asset": "USD", "amount": MAX_UNITS + 1}]}),
], ids=["deposit", "deposit-uint64", "withdraw", "hold", "settle-leg"])
async def test_out_of_range_amounts_on_msgpack_are_refused_before_the_store(
    nc: Client, wallet: InProcessWallet, endpoint: str, body: dict[str, object]
) -> None:
    account = new_account("mp")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:d")
    before = (await balance(nc, account), await event_count(nc, account))
    command = {"account": account, "op_id": f"{account}:x", **body}
    if endpoint == "settle":
        command.pop("account")

    reply = await nc.request(f"wallet.p0.{endpoint}", msgpack.packb(command), timeout=5)

    assert (reply.headers or {}).get(QT_ERROR_HEADER) == "amount_out_of_range", reply.data
    assert (await balance(nc, account), await event_count(nc, account)) == before


async def test_a_store_failure_of_one_command_fails_only_it_and_deterministically(
    nc: Client, wallet: InProcessWallet
) -> None:
    """A command SQLite refuses (here a trigger stands in for any such bug) is `internal`, which no caller
    retries forever, and the commands committed in the same batch are not failed with it."""
    poison = new_account("poison")
    with sqlite3.connect(db_path(wallet.config.data_dir)) as db:
        db.execute(f"CREATE TRIGGER poison BEFORE INSERT ON events WHEN NEW.account = '{poison}' "
                   "BEGIN SELECT RAISE(ABORT, 'poisoned'); END")
    healthy = [new_account("ok") for _ in range(20)]

    results = await asyncio.gather(
        wallet_call(nc, "deposit", account=poison, asset="USD", amount="1.00", op_id=f"{poison}:d"),
        *(wallet_call(nc, "deposit", account=a, asset="USD", amount="1.00", op_id=f"{a}:d") for a in healthy),
        return_exceptions=True,
    )

    assert isinstance(results[0], QtError) and results[0].code is ErrorCode.INTERNAL
    assert not [r for r in results[1:] if isinstance(r, BaseException)]
    assert [await balance(nc, a) for a in healthy] == [("1.00", "0.00")] * len(healthy)
    assert await event_count(nc, poison) == 0
