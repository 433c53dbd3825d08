"""SIGKILL of the wallet while `wallet.batch` requests stream in: every acknowledged batch is in SQLite
and the WALLET stream exactly once after restart, and resending every batch applies each command once."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.errors import QtError
from nodes.wallet.node import db_path
from tests.conftest import wait_for_service
from tests.procs import NodeProcess
from tests.wallet.client import balance, new_account, wallet_call
from tests.wallet.test_crash_recovery import _sqlite_op_counts, _stream_op_counts, sigkill_under_load
from tooling.natsserver import NatsServer

BATCHES = 80
PER_BATCH = 25
WORKERS = 8
KILL_AFTER_BATCHES = 12


def _batch(account: str, b: int) -> list[dict[str, object]]:
    return [{"hold": {"account": account, "asset": "USD", "amount": "1.00", "hold_id": f"{account}:{b}:{i}",
                      "op_id": f"{account}:{b}:{i}"}} for i in range(PER_BATCH)]


async def _send_until_killed(nc: Client, account: str, acked: set[int], killed: asyncio.Event,
                             worker: int) -> None:
    for b in range(worker, BATCHES, WORKERS):
        if killed.is_set():
            return
        try:
            reply = await wallet_call(nc, "batch", commands=_batch(account, b))
        except QtError:
            return  # the wallet is gone: this batch may or may not have committed
        assert all("ok" in r for r in reply["results"])
        acked.add(b)


@pytest.mark.slow
async def test_sigkill_mid_batch_loses_nothing_acknowledged_and_applies_nothing_twice(
    nc: Client, nats_server: NatsServer, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    account = new_account("batchcrash")
    data = tmp_path / "wallet-data"
    node = NodeProcess("nodes.wallet", nats_server.url, data, nats_server.data_dir)
    processes.append(node.start())
    await wait_for_service(nc, "wallet")
    total = BATCHES * PER_BATCH
    await wallet_call(nc, "deposit", account=account, asset="USD", amount=f"{total}.00", op_id=f"{account}:fund")

    acked: set[int] = set()
    killed = asyncio.Event()
    await sigkill_under_load(node, [_send_until_killed(nc, account, acked, killed, w) for w in range(WORKERS)],
                             acked, KILL_AFTER_BATCHES, killed)

    restarted = NodeProcess("nodes.wallet", nats_server.url, data, nats_server.data_dir)
    processes.append(restarted.start())
    await wait_for_service(nc, "wallet")

    in_sqlite = _sqlite_op_counts(db_path(data), account)
    acked_ops = {f"{account}:{b}:{i}" for b in acked for i in range(PER_BATCH)}
    assert all(in_sqlite[op] == 1 for op in acked_ops), "an acknowledged command is missing"
    assert max(in_sqlite.values()) == 1, "a command was applied twice"
    assert await _stream_op_counts(nc, account, in_sqlite.total()) == in_sqlite

    for b in range(BATCHES):  # the caller's retry: every batch again, acknowledged or not
        reply = await wallet_call(nc, "batch", commands=_batch(account, b))
        assert all("ok" in r for r in reply["results"])
        assert all(r["replayed"] for r in reply["results"]) or b not in acked
    final = _sqlite_op_counts(db_path(data), account)
    assert len(final) == total + 1 and max(final.values()) == 1
    assert await balance(nc, account) == ("0.00", f"{total}.00")
    assert await _stream_op_counts(nc, account, total + 1) == final
    assert (await wallet_call(nc, "verify", account=account))["ok"] is True
    assert restarted.terminate() == 0
