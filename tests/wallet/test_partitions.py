"""A wallet partition serves only the accounts that hash to it, and only with the partition count it was
created with: a misrouted request or a misconfigured process can never split an account over two ledgers."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.errors import ErrorCode
from contracts.subjects import WALLET_PARTITION_ENV, WALLET_PARTITIONS_ENV
from nodes.wallet.schema import PartitionCountMismatch, record_partitions
from tests.clearing.platform import account_on, refused
from tests.conftest import InProcessWallet, node_config
from tests.procs import NodeProcess
from tests.wallet.client import new_account, wallet_call
from tooling.natsserver import NatsServer

FOREIGN_ERROR = str(ErrorCode.WRONG_PARTITION)


@pytest.fixture
def partition_0_of_2(monkeypatch: pytest.MonkeyPatch) -> None:
    """The environment of partition 0 of a two-partition mesh (set before the `wallet` fixture starts)."""
    monkeypatch.setenv(WALLET_PARTITIONS_ENV, "2")
    monkeypatch.setenv(WALLET_PARTITION_ENV, "0")


@pytest.fixture
def p0_of_2(partition_0_of_2: None, wallet: InProcessWallet) -> InProcessWallet:
    """Partition 0 of a two-partition mesh, alone (partition 1 is not running): the `wallet` fixture's node."""
    return wallet


def ledger_rows(wallet: InProcessWallet) -> tuple[int, int, int, int]:
    """(events, ops, holds, balances) rows in the partition's SQLite file."""
    db = sqlite3.connect(f"file:{wallet.config.data_dir / 'wallet' / 'p0.sqlite'}?mode=ro", uri=True)
    try:
        return tuple(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # type: ignore[return-value]
                     for table in ("events", "ops", "holds", "balances"))
    finally:
        db.close()


async def test_every_endpoint_refuses_an_account_of_another_partition(nc: Client, p0_of_2: InProcessWallet) -> None:
    mine, theirs = account_on(0, 2, new_account("mine")), account_on(1, 2, new_account("theirs"))
    await wallet_call(nc, "deposit", account=mine, asset="USD", amount="10.00", op_id=f"{mine}:fund")
    before = ledger_rows(p0_of_2)

    errors = [
        await refused(wallet_call(nc, "deposit", account=theirs, asset="USD", amount="1.00", op_id=f"{theirs}:1")),
        await refused(wallet_call(nc, "withdraw", account=theirs, asset="USD", amount="1.00", op_id=f"{theirs}:2")),
        await refused(wallet_call(nc, "hold", account=theirs, asset="USD", amount="1.00", hold_id=f"{theirs}:h",
                                  op_id=f"{theirs}:3")),
        # one foreign leg refuses the whole settlement: the local leg does not move either
        await refused(wallet_call(nc, "settle", op_id=f"{mine}:settle", legs=[
            {"kind": "credit", "account": theirs, "asset": "USD", "amount": "1.00"},
            {"kind": "charge", "account": mine, "asset": "USD", "amount": "1.00"}])),
        await refused(wallet_call(nc, "balance", account=theirs)),
        await refused(wallet_call(nc, "events", account=theirs)),
        await refused(wallet_call(nc, "verify", account=theirs)),
        await refused(wallet_call(nc, "rebuild", account=theirs)),
    ]

    assert {str(e.code) for e in errors} == {FOREIGN_ERROR}, errors
    assert errors[0].detail == {"partition": 0, "partitions": 2, "accounts": {theirs: 1}}
    assert ledger_rows(p0_of_2) == before  # nothing was written, not even an op_id record
    assert (await wallet_call(nc, "balance", account=mine))["balances"]["USD"]["available"] == "10.00"


async def test_a_batch_refuses_only_its_foreign_items(nc: Client, p0_of_2: InProcessWallet) -> None:
    mine, theirs = account_on(0, 2, new_account("mine")), account_on(1, 2, new_account("theirs"))
    await wallet_call(nc, "deposit", account=mine, asset="USD", amount="10.00", op_id=f"{mine}:fund")
    before = ledger_rows(p0_of_2)

    reply = await wallet_call(nc, "batch", commands=[
        {"hold": {"account": theirs, "asset": "USD", "amount": "1.00", "hold_id": f"{theirs}:h",
                  "op_id": f"{theirs}:1"}},
        {"hold": {"account": mine, "asset": "USD", "amount": "4.00", "hold_id": f"{mine}:h", "op_id": f"{mine}:1"}},
    ])

    first, second = reply["results"]
    assert first["error"]["code"] == FOREIGN_ERROR and "ok" not in first
    assert second["ok"]["changes"][0]["held"] == "4.00"
    events, ops, holds, balances = ledger_rows(p0_of_2)
    assert (events, ops, holds, balances) == (before[0] + 1, before[1] + 1, before[2] + 1, before[3])


def start_wallet(nats_server: NatsServer, data: Path, partition: int, partitions: int) -> NodeProcess:
    """A real `python -m nodes.wallet` on `data` as partition `partition` of `partitions`."""
    return NodeProcess("nodes.wallet", nats_server.url, data, nats_server.data_dir,
                       extra_env={WALLET_PARTITION_ENV: str(partition), WALLET_PARTITIONS_ENV: str(partitions)}).start()


@pytest.mark.parametrize(("partition", "partitions", "reason"), [
    (0, 2, "was created with 1 wallet partitions, configured 2"),  # the mesh's P changed under a ledger
    (2, 2, "QT_WALLET_PARTITION=2 but only 2 partitions"),
])
async def test_a_wallet_refuses_to_start_with_another_partition_count(
        nats_server: NatsServer, tmp_path: Path, nc: Client, processes: list[NodeProcess], partition: int,
        partitions: int, reason: str) -> None:
    data = tmp_path / "wallet-data"
    first = InProcessWallet(node_config(nats_server, data, "wallet"), nc)  # P=1: the default
    await first.start()
    await first.stop()
    if partition != 0:  # the data dir of that partition holds a P=1 ledger too
        (data / "wallet" / "p0.sqlite").rename(data / "wallet" / f"p{partition}.sqlite")

    proc = start_wallet(nats_server, data, partition, partitions)
    processes.append(proc)  # killed at teardown should it (wrongly) keep running
    assert proc.proc is not None
    code = proc.proc.wait(timeout=60)

    log = (data / "nodes.wallet.log").read_text()
    assert code == 2, log
    assert "partition count mismatch" in log and reason in log, log


def test_the_start_check_does_not_wait_for_the_writer_holding_the_lock(tmp_path: Path) -> None:
    path = tmp_path / "p0.sqlite"
    record_partitions(path, 2)
    active = sqlite3.connect(path, isolation_level=None)
    active.execute("BEGIN IMMEDIATE")  # the partition's writer, mid-transaction
    active.execute("UPDATE meta SET value = value WHERE key = 'relayed_seq'")
    outcome: list[str] = []

    def standby_start() -> None:
        try:
            record_partitions(path, 2)
            outcome.append("matched")
            record_partitions(path, 3)
        except PartitionCountMismatch:
            outcome.append("refused")

    check = threading.Thread(target=standby_start, daemon=True)
    check.start()
    check.join(timeout=5)  # SQLite's busy timeout is 30 s: a check that wanted the lock would still wait

    active.execute("ROLLBACK")
    active.close()
    assert outcome == ["matched", "refused"]
