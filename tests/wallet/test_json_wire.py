"""`nats req`-style raw JSON works and is answered in JSON; msgpack is answered in msgpack."""

from __future__ import annotations

import json

import msgpack
from nats.aio.client import Client

from tests.conftest import InProcessWallet
from tests.wallet.client import new_account, wallet_call


async def test_raw_json_balance_request_gets_json_back(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("json")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="10050.00", op_id=f"{account}:d")

    reply = await nc.request("wallet.p0.balance", json.dumps({"account": account}).encode(), timeout=5)

    assert json.loads(reply.data) == {
        "account": account,
        "balances": {"USD": {"available": "10050.00", "held": "0.00", "version": 1}},
    }


async def test_msgpack_request_gets_integer_units_back(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("mp")
    await wallet_call(nc, "deposit", account=account, asset="BTC", amount="0.00000001", op_id=f"{account}:d")

    reply = await nc.request("wallet.p0.balance", msgpack.packb({"account": account}), timeout=5)

    assert msgpack.unpackb(reply.data)["balances"]["BTC"]["available"] == 1
