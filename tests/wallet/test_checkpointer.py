"""The checkpointer copies the WAL back into the database beside the writer, whose commits never do it."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from nats.aio.client import Client

from contracts.wallet import Deposit
from nodes.wallet.checkpointer import Checkpoint, Checkpointer
from nodes.wallet.node import db_path
from tests.conftest import InProcessWallet
from tests.wallet.client import new_account, wallet_call
from tests.wallet.writers import running_writer


def events_in_file_alone(path: Path, scratch: Path) -> int:
    """Events in the database file read without its WAL: only what a checkpoint copied back (-1 when the
    copy caught a checkpoint half-way through writing the file)."""
    copy = scratch / f"alone-{time.monotonic_ns()}.sqlite"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy)
    try:
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'events'").fetchone():
            return 0  # not even the schema is in the file yet
        return int(conn.execute("SELECT count(*) FROM events").fetchone()[0])
    except sqlite3.DatabaseError:
        return -1
    finally:
        conn.close()


async def test_a_checkpoint_beside_the_writer_copies_the_wal_back_and_lets_it_start_over(tmp_path: Path) -> None:
    path = tmp_path / "p0.sqlite"
    async with running_writer(path) as writer:
        checkpointer = Checkpointer(path, interval_s=3600)  # runs only when asked
        checkpointer.start()
        try:
            for k in range(20):
                await writer.submit_many([Deposit(account=f"a{i}", asset="USD", amount=1, op_id=f"d{k}.{i}")
                                          for i in range(32)])
            assert events_in_file_alone(path, tmp_path) == 0  # the writer's commits left it all in the WAL

            first = checkpointer.run_once()

            assert first.complete and first.wal_frames > 100
            assert events_in_file_alone(path, tmp_path) == 640
            await writer.submit(Deposit(account="a0", asset="USD", amount=1, op_id="after"))
            assert checkpointer.run_once().wal_frames < 20  # the writer started the WAL over
        finally:
            checkpointer.stop()


async def test_a_wallet_node_copies_its_wal_back_by_itself(wallet: InProcessWallet, nc: Client) -> None:
    account = new_account("ckpt")
    await asyncio.gather(*(wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00",
                                       op_id=f"{account}:{i}") for i in range(50)))
    path = db_path(wallet.config.data_dir)
    scratch = path.parent

    deadline = time.monotonic() + 10
    while events_in_file_alone(path, scratch) < 50 and time.monotonic() < deadline:
        await asyncio.sleep(0.1)

    assert events_in_file_alone(path, scratch) >= 50  # the node's thread did it: no commit reached the bound


def test_stop_ends_the_thread(tmp_path: Path) -> None:
    path = tmp_path / "p0.sqlite"
    sqlite3.connect(path).execute("PRAGMA journal_mode=WAL").fetchone()
    checkpointer = Checkpointer(path, interval_s=0.01)
    checkpointer.start()
    deadline = time.monotonic() + 5
    while checkpointer.runs == 0 and time.monotonic() < deadline:
        time.sleep(0.01)

    checkpointer.stop()

    assert checkpointer.runs > 0
    assert not any(t.name == "wallet-checkpoint" for t in threading.enumerate())


class WriterCommitsDuringTheFirstRun(Checkpointer):
    """A checkpointer whose first run the writer outpaces: a real commit lands right after it."""

    def __init__(self, path: Path, commit: Callable[[], None]) -> None:
        super().__init__(path, interval_s=3600)  # runs only when asked
        self.commit = commit

    def run_once(self) -> Checkpoint:
        result = super().run_once()
        if self.runs == 1:
            self.commit()
        return result


def test_catch_up_copies_what_the_writer_appended_meanwhile_so_the_wal_starts_over(tmp_path: Path) -> None:
    path = tmp_path / "p0.sqlite"
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("PRAGMA journal_mode=WAL")
    writer.execute("PRAGMA wal_autocheckpoint=0")  # only the checkpointer copies the WAL back
    writer.execute("CREATE TABLE t (k INTEGER PRIMARY KEY, v BLOB)")
    k = iter(range(1_000_000))

    def commit() -> None:
        writer.execute("BEGIN IMMEDIATE")
        writer.executemany("INSERT INTO t VALUES (?, randomblob(3000))", [(next(k),) for _ in range(50)])
        writer.execute("COMMIT")

    commit()
    checkpointer = WriterCommitsDuringTheFirstRun(path, commit)
    checkpointer.start()
    try:
        assert checkpointer.catch_up()  # the second run found the commit, the third nothing new
        assert checkpointer.runs == 3
        commit()  # the writer's next transaction starts the WAL over, so it holds only this commit
        assert checkpointer.run_once().wal_frames < 60
    finally:
        checkpointer.stop()
        writer.close()
