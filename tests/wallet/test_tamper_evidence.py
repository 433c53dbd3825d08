"""The event log refuses UPDATE and DELETE, and `verify` names the first tampered event."""

from __future__ import annotations

import sqlite3

import pytest
from nats.aio.client import Client

from nodes.wallet.node import db_path
from tests.conftest import InProcessWallet
from tests.wallet.client import new_account, wallet_call


async def test_update_and_delete_on_events_are_refused(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("audit")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:d")
    db = sqlite3.connect(db_path(wallet.config.data_dir))
    try:
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("UPDATE events SET amount = 999 WHERE account = ?", (account,))
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute("DELETE FROM events WHERE account = ?", (account,))
    finally:
        db.close()


async def test_verify_names_the_first_tampered_event(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("audit")
    replies = [
        await wallet_call(nc, "deposit", account=account, asset="USD", amount=f"{i}.00", op_id=f"{account}:{i}")
        for i in range(1, 6)
    ]
    assert (await wallet_call(nc, "verify"))["ok"] is True
    third = replies[2]["event_ids"][0]
    seq = int(third.rsplit("-", 1)[1])

    db = sqlite3.connect(db_path(wallet.config.data_dir), isolation_level=None)
    try:  # an attacker with the file: drop the guard, rewrite the amount, put the guard back
        (trigger_sql,) = db.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'events_refuse_update'").fetchone()
        db.execute("DROP TRIGGER events_refuse_update")
        db.execute("UPDATE events SET amount = amount * 100 WHERE seq = ?", (seq,))
        db.execute(trigger_sql)
    finally:
        db.close()

    report = await wallet_call(nc, "verify")

    assert report["ok"] is False
    assert report["first_bad"]["event_id"] == third
    assert report["first_bad"]["version"] == 3
    assert "hash" in report["first_bad"]["reason"]
