"""In-process SQLite: EventStore.execute_batch appends/s, and the bare sqlite3/aiosqlite peers."""

from __future__ import annotations

import cProfile
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import aiosqlite

from contracts.wallet import Deposit
from nodes.wallet.store import Command, EventStore
from tooling.bench.stats import Run, rate_only

ACCOUNTS = 1000
PEER_TABLE = "CREATE TABLE t (id INTEGER PRIMARY KEY, account TEXT NOT NULL, amount INTEGER NOT NULL)"
PEER_INSERT = "INSERT INTO t(account, amount) VALUES (?, ?)"


@dataclass(frozen=True)
class StorePlan:
    """Batch sizes, sync modes and seconds per point."""

    batches: tuple[int, ...] = (1, 100, 1000)
    syncs: tuple[str, ...] = ("FULL", "NORMAL")
    duration_s: float = 3.0


def deposits(tag: str, start: int, count: int) -> list[tuple[Command, str | None]]:
    """`count` validated deposits of 1.00 USD over `ACCOUNTS` accounts, unique op_ids."""
    return [
        (Deposit(account=f"acct{i % ACCOUNTS}", asset="USD", amount=100, op_id=f"{tag}-{i}"), None)
        for i in range(start, start + count)
    ]


def store_appends(path: Path, *, batch: int, sync: str, duration_s: float,
                  profile: cProfile.Profile | None = None) -> Run:
    """Events/s through `execute_batch` on a fresh file; only time inside the call is counted.

    Commands are built (and validated by pydantic) outside the timed region, as the node's
    service layer does before it hands them to the writer.
    """
    store = EventStore(path, synchronous=sync)
    inside = 0.0
    done = 0
    wall_limit = time.perf_counter() + duration_s * 4
    try:
        while inside < duration_s and time.perf_counter() < wall_limit:
            commands = deposits(f"b{batch}", done, batch)
            if profile is not None:
                profile.enable()
            started = time.perf_counter()
            outcomes = store.execute_batch(commands)
            inside += time.perf_counter() - started
            if profile is not None:
                profile.disable()
            if any(o.error is not None for o in outcomes):
                raise RuntimeError(f"a deposit was refused: {next(o.error for o in outcomes if o.error)}")
            done += batch
    finally:
        store.close()
    return rate_only(f"batch {batch} {sync}", done, inside)


def sqlite_rows(path: Path, *, rows: int, sync: str, duration_s: float) -> Run:
    """Rows/s of bare sqlite3 (WAL): BEGIN, `rows` one-row INSERTs, COMMIT; like the store's calls."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(f"PRAGMA synchronous={sync}")
        conn.execute(PEER_TABLE)
        cur = conn.cursor()
        done = 0
        started = time.perf_counter()
        end = started + duration_s
        while time.perf_counter() < end:
            cur.execute("BEGIN")
            for i in range(done, done + rows):
                cur.execute(PEER_INSERT, (f"acct{i % ACCOUNTS}", 100))
            cur.execute("COMMIT")
            done += rows
        return rate_only(f"sqlite3 {rows}-row txn {sync}", done, time.perf_counter() - started)
    finally:
        conn.close()


async def aiosqlite_rows(path: Path, *, sync: str, duration_s: float) -> Run:
    """One-row transactions/s through aiosqlite used the usual way: `execute` then `commit`."""
    async with aiosqlite.connect(path) as db:
        await db.execute("PRAGMA journal_mode=WAL")
        await db.execute(f"PRAGMA synchronous={sync}")
        await db.execute(PEER_TABLE)
        await db.commit()
        done = 0
        started = time.perf_counter()
        end = started + duration_s
        while time.perf_counter() < end:
            await db.execute(PEER_INSERT, (f"acct{done % ACCOUNTS}", 100))
            await db.commit()
            done += 1
        return rate_only(f"aiosqlite 1-row txn {sync}", done, time.perf_counter() - started)


def profile_appends(root: Path, *, batch: int, sync: str, duration_s: float) -> tuple[Path, Run]:
    """`store_appends` with cProfile around each `execute_batch` call; stats dumped to a file."""
    profile = cProfile.Profile()
    run = store_appends(root / f"profiled-{batch}-{sync}.sqlite", batch=batch, sync=sync,
                        duration_s=duration_s, profile=profile)
    out = root / f"store-{batch}-{sync}.prof"
    profile.dump_stats(out)
    return out, run
