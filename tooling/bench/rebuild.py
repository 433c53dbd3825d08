"""One account with a million events: how long replay and rebuild take, with and without snapshots."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from contracts.wallet import Leg, LegKind, Settle
from nodes.wallet.replay import rebuild, replay
from nodes.wallet.schema import open_db
from nodes.wallet.store import Command, EventStore

T = TypeVar("T")
ACCOUNT = "whale"
ASSET = "USD"
LEGS = 64
PER_TXN = 160


@dataclass
class RebuildResults:
    """Timings of the build and of each way of recomputing the account."""

    events: int
    snapshot_every: int
    build_s: float = 0.0
    db_bytes: int = 0
    scan_s: float = 0.0
    replay_full_s: float = 0.0
    replay_full_events: int = 0
    replay_snap_s: float = 0.0
    replay_snap_events: int = 0
    rebuild_s: float = 0.0
    rebuild_full_s: float = 0.0
    identical: bool = False
    balance_ok: bool = False
    notes: list[str] = field(default_factory=list)


def build_account(path: Path, *, events: int, snapshot_every: int = 500) -> float:
    """Credit 0.01 USD `events` times to one account through `EventStore`; seconds taken.

    Each command is a settlement of `LEGS` credit legs and each transaction holds `PER_TXN`
    commands: the store's public path, with its per-command costs (op_id record, reply)
    spread over many events so a million of them take seconds rather than minutes.
    """
    store = EventStore(path, synchronous="NORMAL", snapshot_every=snapshot_every)
    started = time.perf_counter()
    leg = Leg(kind=LegKind.CREDIT, account=ACCOUNT, asset=ASSET, amount=1)
    done = 0
    try:
        while done < events:
            commands: list[tuple[Command, str | None]] = []
            for _ in range(PER_TXN):
                count = min(LEGS, events - done)
                if count == 0:
                    break
                commands.append((Settle(op_id=f"w-{done}", legs=[leg] * count), None))
                done += count
            outcomes = store.execute_batch(commands)
            if any(o.error is not None for o in outcomes):
                raise RuntimeError("a credit was refused while building the account")
    finally:
        store.close()
    return time.perf_counter() - started


def timed(fn: Callable[[], T]) -> tuple[float, T]:
    """`(seconds, result)` of one call."""
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def scan(path: Path) -> int:
    """The peer: read the same rows replay reads, in the same order, and do nothing with them."""
    db = open_db(path, synchronous="NORMAL")
    try:
        rows = db.execute(
            "SELECT type, amount, hold_id, hash FROM events WHERE account=? AND asset=? AND version > ? "
            "ORDER BY version", (ACCOUNT, ASSET, 0))
        return sum(1 for _ in rows)
    finally:
        db.close()


def bench_rebuild(root: Path, *, events: int, snapshot_every: int = 500) -> RebuildResults:
    """Build the account once, then time scan, replays and rebuilds, each on a fresh connection."""
    path = root / "rebuild.sqlite"
    out = RebuildResults(events=events, snapshot_every=snapshot_every)
    out.build_s = build_account(path, events=events, snapshot_every=snapshot_every)
    out.db_bytes = sum(p.stat().st_size for p in root.glob("rebuild.sqlite*"))
    key = (ACCOUNT, ASSET)
    out.scan_s, scanned = timed(lambda: scan(path))
    if scanned != events:
        out.notes.append(f"scan read {scanned} rows, expected {events}")
    db = open_db(path, synchronous="NORMAL")
    try:
        out.replay_full_s, (pos, out.replay_full_events, _) = timed(lambda: replay(db, key, use_snapshot=False))
        out.balance_ok = pos.available == events and pos.version == events
    finally:
        db.close()
    db = open_db(path, synchronous="NORMAL")
    try:
        out.replay_snap_s, (_, out.replay_snap_events, used) = timed(lambda: replay(db, key, use_snapshot=True))
        if not used:
            out.notes.append("replay with use_snapshot=True found no snapshot")
    finally:
        db.close()
    db = open_db(path, synchronous="NORMAL")
    try:
        out.rebuild_s, reply = timed(lambda: rebuild(db, ACCOUNT))
        out.identical = reply.identical
        out.rebuild_full_s, reply_full = timed(lambda: rebuild(db, ACCOUNT, use_snapshots=False))
        out.identical = out.identical and reply_full.identical
    finally:
        db.close()
    return out
