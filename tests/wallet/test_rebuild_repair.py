"""Rebuild runs only when asked: a restart keeps a drifted projection as it is, and `rebuild` reports
the drift and repairs it from the event log."""

from __future__ import annotations

import sqlite3

from nats.aio.client import Client

from nodes.wallet.node import db_path
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, new_account, wallet_call


async def test_boot_keeps_a_drifted_projection_and_rebuild_reports_and_repairs_it(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = new_account("drift")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="10.00", op_id=f"{account}:d1")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="5.00", op_id=f"{account}:d2")
    await wallet.stop()
    db = sqlite3.connect(db_path(wallet.config.data_dir), isolation_level=None)
    try:  # the projection drifts from the log (a bad disk, a bad hand): the log is untouched
        db.execute("UPDATE balances SET available = available + 99900 WHERE account = ?", (account,))
    finally:
        db.close()

    await wallet.start()
    assert await balance(nc, account) == ("1014.00", "0.00")  # boot replayed nothing

    report = await wallet_call(nc, "rebuild", account=account)
    assert report["identical"] is False
    assert [(m["asset"], m["what"]) for m in report["mismatches"]] == [("USD", "available")]
    assert await balance(nc, account) == ("15.00", "0.00")
    assert (await wallet_call(nc, "rebuild", account=account))["identical"] is True
    assert (await wallet_call(nc, "verify", account=account))["ok"] is True
