"""The event log refuses UPDATE, DELETE and a second event at a taken version; `verify` names the first
tampered event."""

from __future__ import annotations

import sqlite3

import pytest
from nats.aio.client import Client

from nodes.wallet.node import db_path
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, new_account, wallet_call


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


async def test_a_second_event_at_a_taken_version_is_refused_and_changes_nothing(
    nc: Client, wallet: InProcessWallet
) -> None:
    account = new_account("audit")
    for i in (1, 2):
        await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:{i}")
    db = sqlite3.connect(db_path(wallet.config.data_dir), isolation_level=None)
    try:  # a second writer forging version 2 (the latest) with a valid-looking row
        columns = "account, asset, version, type, amount, hold_id, op_id, ts_ns, prev_hash, hash"
        row = db.execute(f"SELECT {columns} FROM events WHERE account = ? AND version = 2", (account,)).fetchone()
        forged = (*row[:4], 100_000, row[5], f"{account}:forged", *row[7:])
        with pytest.raises(sqlite3.IntegrityError, match="UNIQUE"):
            db.execute(f"INSERT INTO events({columns}) VALUES (?,?,?,?,?,?,?,?,?,?)", forged)
        assert db.execute("SELECT count(*) FROM events WHERE account = ?", (account,)).fetchone() == (2,)
    finally:
        db.close()

    assert await balance(nc, account) == ("2.00", "0.00")
    assert (await wallet_call(nc, "rebuild", account=account))["identical"] is True
    assert (await wallet_call(nc, "verify", account=account))["ok"] is True
