"""Group commit: commands waiting together are applied in one SQLite transaction, each exactly once,
and none is answered before that transaction is durable."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client

from contracts.credentials import nkey_seed_path
from contracts.errors import ErrorCode
from contracts.wallet import Deposit, Hold
from nodes.wallet.writer import Writer
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call
from tests.wallet.writers import running_writer
from tooling.natsserver import NatsServer

CLIENTS = 64


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    """A writer over a real SQLite file (FULL), its commit loop running."""
    async with running_writer(tmp_path / "p0.sqlite") as writer:
        yield writer


async def test_waiting_commands_commit_in_one_transaction_each_once(writer: Writer) -> None:
    deposits = [Deposit(account=f"a{i % 8}", asset="USD", amount=100, op_id=f"d{i}") for i in range(CLIENTS)]

    outcomes = await asyncio.gather(*(writer.submit(d) for d in deposits))

    assert all(o.error is None and not o.replayed for o in outcomes)
    assert writer.commits == 1  # all were queued before the writer woke: one transaction, one fsync
    rows = writer.store.db.execute("SELECT op_id, count(*) FROM events GROUP BY op_id").fetchall()
    assert sorted(rows) == sorted((d.op_id, 1) for d in deposits)


async def test_a_refused_command_in_a_group_commit_refuses_only_itself(writer: Writer) -> None:
    await writer.submit(Deposit(account="a", asset="USD", amount=100, op_id="fund"))
    commits = writer.commits
    holds = [Hold(account="a", asset="USD", amount=amount, hold_id=f"h{i}", op_id=f"h{i}")
             for i, amount in enumerate((60, 60, 40))]

    first, refused, third = await writer.submit_many(holds)

    assert writer.commits == commits + 1
    assert first.error is None and third.error is None
    assert refused.error is not None and refused.error.code is ErrorCode.INSUFFICIENT_FUNDS
    assert writer.store.db.execute("SELECT hold_id, remaining FROM holds ORDER BY hold_id").fetchall() == [
        ("h0", 60), ("h2", 40)]


async def test_no_reply_before_the_batch_is_durable(writer: Writer, tmp_path: Path) -> None:
    gate = threading.Event()
    blocked = asyncio.ensure_future(writer.call_aside(gate.wait))  # the store is busy with a long job
    submitted = asyncio.ensure_future(writer.submit(Deposit(account="a", asset="USD", amount=5, op_id="x")))
    await asyncio.sleep(0.05)  # room for the writer loop to (wrongly) answer early; a fixed wait can't flake a pass

    assert not submitted.done()  # queued, not committed: not answered
    reader = sqlite3.connect(f"file:{tmp_path / 'p0.sqlite'}?mode=ro", uri=True)
    try:
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 0
        gate.set()
        await blocked
        assert (await submitted).error is None
        assert reader.execute("SELECT count(*) FROM events").fetchone()[0] == 1  # visible once answered
    finally:
        reader.close()


async def test_a_short_call_waits_for_a_job_running_aside(writer: Writer) -> None:
    # the relay's reads share the store's connection with a rebuild run on another thread: never both
    gate = threading.Event()
    ran: list[str] = []
    aside = asyncio.ensure_future(writer.call_aside(lambda: (gate.wait(), ran.append("aside"))))
    short = asyncio.ensure_future(writer.call(ran.append, "short"))
    await asyncio.sleep(0.05)  # the loop stays free meanwhile: this sleep returns while the job waits

    assert ran == [] and not short.done()
    gate.set()
    await asyncio.gather(aside, short)
    assert ran == ["aside", "short"]


async def test_deposits_from_many_real_clients_at_once_are_each_applied_once(
    nats_server: NatsServer, wallet: InProcessWallet, nc: Client
) -> None:
    account = new_account("many")
    seed = nkey_seed_path(nats_server.data_dir, "ops")
    clients = [await nats.connect(nats_server.url, nkeys_seed=str(seed)) for _ in range(CLIENTS)]
    try:
        await asyncio.gather(*(
            wallet_call(c, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:{i}")
            for i, c in enumerate(clients)
        ))
    finally:
        for c in clients:
            await c.close()

    assert await balance(nc, account) == (f"{CLIENTS}.00", "0.00")
    assert await event_count(nc, account) == CLIENTS
    assert (await wallet_call(nc, "verify", account=account))["ok"] is True
