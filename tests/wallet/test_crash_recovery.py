"""SIGKILL of the wallet process mid-stream, once and then repeatedly at random moments: every
acknowledged deposit is in SQLite and in the WALLET stream exactly once after restart; retrying the
unacknowledged ones applies each once."""

from __future__ import annotations

import asyncio
import os
import random
import sqlite3
from collections import Counter
from collections.abc import Coroutine, Sized
from pathlib import Path
from typing import Any

import msgpack
import pytest
from nats.aio.client import Client

from contracts.errors import QtError
from nodes.wallet.node import db_path
from tests.conftest import wait_for_service
from tests.polling import eventually
from tests.procs import NodeProcess
from tests.wallet.client import balance, new_account, wallet_call
from tooling.natsserver import NatsServer

TOTAL = 3000
WORKERS = 16
KILL_AFTER_ACKS = 400


async def _deposit_until_killed(nc: Client, account: str, acked: set[str], killed: asyncio.Event,
                                worker: int) -> None:
    for i in range(worker, TOTAL, WORKERS):
        if killed.is_set():
            return
        op_id = f"{account}:{i}"
        try:
            await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=op_id)
        except QtError:
            return  # the wallet is gone: this one may or may not have committed
        acked.add(op_id)


def _sqlite_op_counts(path: Path, account: str) -> Counter[str]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return Counter(dict(db.execute(
            "SELECT op_id, count(*) FROM events WHERE account = ? GROUP BY op_id", (account,)).fetchall()))
    finally:
        db.close()


async def sigkill_under_load(node: NodeProcess, senders: list[Coroutine[Any, Any, None]], acked: Sized, target: int,
                             stop: asyncio.Event, *, settle_s: float = 0.0, cancel_in_flight: bool = False) -> None:
    """Run `senders` until `target` acknowledgements (plus `settle_s`), SIGKILL `node`, set `stop` and wait for
    the senders (a reply already on its way still counts), or cancel them (`cancel_in_flight`: a request in
    flight then has an unknown outcome, instead of waiting for its timeout). A sender's own failure is raised."""
    workers = [asyncio.create_task(sender) for sender in senders]
    async with asyncio.timeout(60):
        while len(acked) < target:
            assert not all(w.done() for w in workers), f"every sender stopped at {len(acked)} of {target} acks"
            await asyncio.sleep(0.002)
    await asyncio.sleep(settle_s)
    node.kill9()
    stop.set()
    if cancel_in_flight:
        for worker in workers:
            worker.cancel()
    for outcome in await asyncio.gather(*workers, return_exceptions=True):
        if isinstance(outcome, BaseException) and not isinstance(outcome, asyncio.CancelledError):
            raise outcome


async def _stream_op_counts(nc: Client, account: str, expected: int) -> Counter[str]:
    """Read every WALLET message of the account (waiting, bounded, for the relay to catch up)."""
    js = nc.jetstream()

    async def read() -> Counter[str]:
        sub = await js.subscribe(f"wallet.events.{account}.>", ordered_consumer=True)
        counts: Counter[str] = Counter()
        try:
            while True:
                try:
                    msg = await sub.next_msg(timeout=1)
                except TimeoutError:
                    return counts
                counts[msgpack.unpackb(msg.data)["op_id"]] += 1
        finally:
            await sub.unsubscribe()

    return await eventually(read, lambda counts: counts.total() >= expected, every_s=0.2,
                            what=f"{expected} of {account}'s events in WALLET")


@pytest.mark.slow
async def test_sigkill_mid_stream_loses_nothing_acknowledged_and_duplicates_nothing(
    nc: Client, nats_server: NatsServer, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    account = new_account("crash")
    data = tmp_path / "wallet-data"
    node = NodeProcess("nodes.wallet", nats_server.url, data, nats_server.data_dir)
    processes.append(node.start())
    await wait_for_service(nc, "wallet")

    acked: set[str] = set()
    killed = asyncio.Event()
    await sigkill_under_load(node, [_deposit_until_killed(nc, account, acked, killed, w) for w in range(WORKERS)],
                             acked, KILL_AFTER_ACKS, killed)

    restarted = NodeProcess("nodes.wallet", nats_server.url, data, nats_server.data_dir)
    processes.append(restarted.start())
    await wait_for_service(nc, "wallet")

    in_sqlite = _sqlite_op_counts(db_path(data), account)
    assert all(in_sqlite[op] == 1 for op in acked), "an acknowledged deposit is missing"
    assert max(in_sqlite.values()) == 1, "a deposit was applied twice"
    in_stream = await _stream_op_counts(nc, account, in_sqlite.total())
    assert in_stream == in_sqlite, "the WALLET stream differs from the SQLite log"

    unacked = [f"{account}:{i}" for i in range(TOTAL) if f"{account}:{i}" not in acked]
    for start in range(0, len(unacked), 200):
        await asyncio.gather(*(
            wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=op)
            for op in unacked[start:start + 200]
        ))
    final = _sqlite_op_counts(db_path(data), account)
    assert len(final) == TOTAL and max(final.values()) == 1
    assert await balance(nc, account) == (f"{TOTAL}.00", "0.00")
    assert await _stream_op_counts(nc, account, TOTAL) == final
    assert (await wallet_call(nc, "verify", account=account))["ok"] is True
    assert restarted.terminate() == 0


KILLS = int(os.environ.get("QT_WALLET_KILLS", "5"))
ACCOUNTS = 4


@pytest.mark.slow
async def test_repeated_sigkills_at_random_moments_lose_nothing_acknowledged_and_apply_nothing_twice(
    nc: Client, nats_server: NatsServer, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    seed = int(os.environ.get("QT_PROPERTY_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    accounts = [new_account(f"kills{a}") for a in range(ACCOUNTS)]
    data = tmp_path / "wallet-data"
    issued = 0  # op i deposits 1.00 to accounts[i % ACCOUNTS] with op_id "<account>:<i>"
    acked: set[int] = set()

    def op(i: int) -> tuple[str, str]:
        account = accounts[i % ACCOUNTS]
        return account, f"{account}:{i}"

    async def deposit_until_gone(gone: asyncio.Event) -> None:
        nonlocal issued
        while not gone.is_set():
            i, issued = issued, issued + 1
            account, op_id = op(i)
            try:
                await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=op_id)
            except QtError:
                return  # the wallet is gone: this one may or may not have committed
            acked.add(i)

    for _ in range(KILLS):
        node = NodeProcess("nodes.wallet", nats_server.url, data, nats_server.data_dir)
        processes.append(node.start())
        await wait_for_service(nc, "wallet")
        # a random moment: right after boot (the relay catching up), or after some acknowledged deposits
        target = len(acked) + rng.choice([0, rng.randint(1, 50), rng.randint(50, 400)])
        gone = asyncio.Event()
        await sigkill_under_load(node, [deposit_until_gone(gone) for _ in range(WORKERS)], acked, target, gone,
                                 settle_s=rng.uniform(0, 0.02), cancel_in_flight=True)

    restarted = NodeProcess("nodes.wallet", nats_server.url, data, nats_server.data_dir)
    processes.append(restarted.start())
    await wait_for_service(nc, "wallet")
    context = f"seed={seed} issued={issued} acked={len(acked)}"
    in_sqlite: Counter[str] = Counter()
    for account in accounts:
        in_sqlite += _sqlite_op_counts(db_path(data), account)
    assert all(in_sqlite[op(i)[1]] == 1 for i in acked), f"an acknowledged deposit is missing: {context}"
    assert max(in_sqlite.values()) == 1, f"a deposit was applied twice: {context}"

    unacked = [i for i in range(issued) if i not in acked]
    for start in range(0, len(unacked), 200):  # a client retrying what it never heard back about
        await asyncio.gather(*(
            wallet_call(nc, "deposit", account=op(i)[0], asset="USD", amount="1.00", op_id=op(i)[1])
            for i in unacked[start:start + 200]
        ))
    for a, account in enumerate(accounts):
        final = _sqlite_op_counts(db_path(data), account)
        mine = len(range(a, issued, ACCOUNTS))
        assert len(final) == mine and max(final.values()) == 1, context
        assert await balance(nc, account) == (f"{mine}.00", "0.00"), context
        assert await _stream_op_counts(nc, account, mine) == final, context
    assert (await wallet_call(nc, "verify"))["ok"] is True
    assert restarted.terminate() == 0
