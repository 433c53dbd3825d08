"""Rebuild projections from the event log, and verify the log itself from genesis.

`rebuild` starts each (account, asset) at its latest snapshot and folds the later events;
`verify` trusts nothing: it recomputes every hash and checks every snapshot on the way.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from typing import Any

from contracts.errors import QtError
from contracts.subjects import wallet_msg_id
from contracts.wallet import BadEvent, BalanceState, Mismatch, RebuildReply, VerifyReply
from nodes.wallet.ledger import Position, event_hash, fold

Key = tuple[str, str]


def keys_in_scope(db: sqlite3.Connection, account: str | None) -> list[Key]:
    """Every (account, asset) with events or a projection row, optionally for one account."""
    sql = "SELECT account, asset FROM balances {w} UNION SELECT DISTINCT account, asset FROM events {w}"
    where = "WHERE account=?" if account else ""
    params = (account, account) if account else ()
    return sorted(db.execute(sql.format(w=where), params).fetchall())


def replay(db: sqlite3.Connection, key: Key, *, use_snapshot: bool = True) -> tuple[Position, int, bool]:
    """Fold a position from its latest snapshot (or genesis); returns (position, events, used)."""
    pos = Position()
    used = False
    if use_snapshot:
        snap = db.execute(
            "SELECT version, available, held, head, holds FROM snapshots WHERE account=? AND asset=? "
            "ORDER BY version DESC LIMIT 1",
            key,
        ).fetchone()
        if snap is not None:
            pos = Position(snap[1], snap[2], snap[0], snap[3], json.loads(snap[4]))
            used = True
    count = 0
    rows = db.execute(
        "SELECT type, amount, hold_id, hash FROM events WHERE account=? AND asset=? AND version > ? "
        "ORDER BY version",
        (*key, pos.version),
    )
    for type_, amount, hold_id, hash_ in rows:
        fold(pos, type_, amount, hold_id, key[1])
        pos.head = hash_
        count += 1
    return pos, count, used


def stored(db: sqlite3.Connection, key: Key) -> Position:
    """The projection as the tables hold it now."""
    row = db.execute(
        "SELECT available, held, version, head FROM balances WHERE account=? AND asset=?", key
    ).fetchone()
    holds = dict(db.execute(
        "SELECT hold_id, remaining FROM holds WHERE account=? AND asset=? AND remaining > 0", key
    ).fetchall())
    if row is None:
        return Position(holds=holds)
    return Position(row[0], row[1], row[2], row[3], holds)


def differences(key: Key, have: Position, want: Position) -> list[Mismatch]:
    """Field-by-field differences between a stored and a replayed position."""
    out = []
    for what in ("available", "held", "version", "head", "holds"):
        a, b = getattr(have, what), getattr(want, what)
        if a != b:
            out.append(Mismatch(account=key[0], asset=key[1], what=what,
                                stored=_short(a), replayed=_short(b)))
    return out


def rebuild(
    db: sqlite3.Connection, account: str | None = None, *, use_snapshots: bool = True
) -> RebuildReply:
    """Recompute projections and rewrite any that differ; reports before, after and identical."""
    started = time.perf_counter_ns()
    before: list[BalanceState] = []
    after: list[BalanceState] = []
    mismatches: list[Mismatch] = []
    replayed_total = 0
    snapshots = 0
    fixes: list[tuple[Key, Position]] = []
    for key in keys_in_scope(db, account):
        have = stored(db, key)
        want, count, used = replay(db, key, use_snapshot=use_snapshots)
        replayed_total += count
        snapshots += used
        before.append(_state(key, have))
        after.append(_state(key, want))
        diff = differences(key, have, want)
        if diff:
            mismatches.extend(diff)
            fixes.append((key, want))
    if fixes:
        _repair(db, fixes)
    return RebuildReply(
        identical=not mismatches, accounts=len({s.account for s in after}),
        events_replayed=replayed_total, snapshots_used=snapshots, before=before, after=after,
        mismatches=mismatches, elapsed_us=(time.perf_counter_ns() - started) // 1000,
    )


def _repair(db: sqlite3.Connection, fixes: Iterable[tuple[Key, Position]]) -> None:
    """Make the projection equal to the replay: the log is the truth."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for (account, asset), pos in fixes:
            db.execute(
                "INSERT OR REPLACE INTO balances(account, asset, available, held, version, head) "
                "VALUES (?,?,?,?,?,?)",
                (account, asset, pos.available, pos.held, pos.version, pos.head),
            )
            db.execute(
                "UPDATE holds SET remaining = 0 WHERE account=? AND asset=? AND remaining > 0",
                (account, asset),
            )
            for hold_id, remaining in pos.holds.items():
                db.execute("UPDATE holds SET remaining=? WHERE hold_id=?", (remaining, hold_id))
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise


def verify(db: sqlite3.Connection, account: str | None = None, *, ledger: str) -> VerifyReply:
    """Recompute the hash chain and every snapshot from genesis; name the first bad event."""
    where, params = ("WHERE account=?", (account,)) if account else ("", ())
    snaps: dict[tuple[str, str, int], tuple[int, int, str, str]] = {
        (r[0], r[1], r[2]): (r[3], r[4], r[5], r[6])
        for r in db.execute(
            f"SELECT account, asset, version, available, held, head, holds FROM snapshots {where}", params
        )
    }
    positions: dict[Key, Position] = {}
    checked = 0
    snaps_checked = 0
    rows = db.execute(
        "SELECT seq, account, asset, version, type, amount, hold_id, op_id, ts_ns, prev_hash, hash "
        f"FROM events {where} ORDER BY seq",
        params,
    )
    for seq, acct, asset, version, type_, amount, hold_id, op_id, ts_ns, prev_hash, hash_ in rows:
        checked += 1
        pos = positions.setdefault((acct, asset), Position())
        reason = _check_event(pos, (acct, asset, version, type_, amount, hold_id, op_id, ts_ns),
                              prev_hash, hash_)
        snap = snaps.get((acct, asset, version))
        if reason is None and snap is not None:
            snaps_checked += 1
            if (snap[0], snap[1], snap[2], json.loads(snap[3])) != (
                pos.available, pos.held, pos.head, pos.holds
            ):
                reason = "snapshot at this version differs from the replay"
        if reason is not None:
            return VerifyReply(
                ok=False, events_checked=checked, snapshots_checked=snaps_checked,
                first_bad=BadEvent(seq=seq, event_id=wallet_msg_id(ledger, seq), account=acct,
                                   asset=asset, version=version, reason=reason),
            )
    for key in keys_in_scope(db, account):
        have = stored(db, key)
        want = positions.get(key, Position())
        if differences(key, have, want):
            last = db.execute(
                "SELECT seq, version FROM events WHERE account=? AND asset=? ORDER BY version DESC LIMIT 1",
                key,
            ).fetchone() or (0, 0)
            return VerifyReply(
                ok=False, events_checked=checked, snapshots_checked=snaps_checked,
                first_bad=BadEvent(seq=last[0], event_id=wallet_msg_id(ledger, last[0]),
                                   account=key[0], asset=key[1], version=last[1],
                                   reason="projection differs from the replay of the log"),
            )
    return VerifyReply(ok=True, events_checked=checked, snapshots_checked=snaps_checked, first_bad=None)


def _check_event(pos: Position, fields: tuple[Any, ...], prev_hash: str, hash_: str) -> str | None:
    """Fold one event into `pos` after checking its place in the chain; the reason it is bad, if so."""
    acct, asset, version, type_, amount, hold_id, op_id, ts_ns = fields
    if version != pos.version + 1:
        return f"version {version} follows {pos.version}"
    if prev_hash != pos.head:
        return "prev_hash does not match the previous event's hash"
    if event_hash(prev_hash, acct, asset, version, type_, amount, hold_id, op_id, ts_ns) != hash_:
        return "hash does not match the event's content"
    try:
        fold(pos, type_, amount, hold_id, asset)
    except QtError as exc:
        return f"event cannot apply: {exc.message}"
    pos.head = hash_
    return None


def _state(key: Key, pos: Position) -> BalanceState:
    return BalanceState(account=key[0], asset=key[1], available=pos.available, held=pos.held,
                        version=pos.version)


def _short(value: object) -> str:
    text = json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)
    return text if len(text) <= 200 else text[:197] + "..."

