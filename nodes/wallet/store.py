"""The wallet event store: applies commands in group-committed SQLite transactions.

One instance is owned by one `Writer`, which never runs two calls at once. A batch is one
transaction; a refused command leaves no trace (a multi-leg settle runs under a savepoint) and the
rest still commit.
Events, projection, holds, snapshots, outbox rows and the op_id record are written in the same
transaction: there is no dual write to lose.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from pydantic import BaseModel

from contracts.codec import Wire
from contracts.errors import BUSINESS_CODES, ErrorCode, QtError
from contracts.money import format_amount
from contracts.subjects import wallet_event_subject, wallet_msg_id
from contracts.wallet import (
    Credit,
    Debit,
    Deposit,
    EventType,
    Hold,
    Leg,
    LegKind,
    MutationReply,
    Release,
    Settle,
    WalletEvent,
    Withdraw,
)
from nodes.wallet.ledger import Position, check_room, event_hash, fold
from nodes.wallet.schema import ledger_id, open_db

#: WAL pages (of 4 KiB) after which a commit checkpoints itself: ~40 MiB of WAL at most, replayed on
#: open. In a node the `Checkpointer` thread copies the WAL back long before (a commit makes ~4-60 pages).
WAL_CHECKPOINT_PAGES = 10_000
Command = Deposit | Withdraw | Credit | Hold | Release | Debit | Settle
Key = tuple[str, str]
_PLAIN: dict[type, EventType] = {
    Deposit: EventType.DEPOSITED, Withdraw: EventType.WITHDRAWN, Credit: EventType.CREDITED,
}


@dataclass(frozen=True, slots=True)
class MutationView:
    """A `MutationReply` built from trusted values without pydantic's cost on the hot path."""

    op_id: str
    changes: list[dict[str, Any]]
    event_ids: list[str]

    def to_wire(self, wire: str) -> dict[str, Any]:
        """The `MutationReply` shape: integer units in msgpack, decimal strings in JSON."""
        changes = self.changes
        if wire == Wire.JSON:
            changes = [{**c, "available": format_amount(c["asset"], c["available"]),
                        "held": format_amount(c["asset"], c["held"])} for c in changes]
        return {"op_id": self.op_id, "changes": changes, "event_ids": self.event_ids}


@dataclass(frozen=True)
class Outcome:
    """What one command produced: a reply or a refusal, and whether it was replayed by op_id."""

    reply: MutationView | None
    error: QtError | None
    replayed: bool = False


@dataclass
class _Scope:
    """One command in flight: its cursor, the batch's staged positions, and what it changed.

    Positions are copied into `positions` on first touch and merged into `staged` only when the
    command's savepoint is released, so a refused command leaves no trace in memory either.
    """

    cur: sqlite3.Cursor
    staged: dict[Key, Position]
    op_id: str
    traceparent: str | None
    rows: list[tuple[Any, ...]]
    """The batch's event rows, inserted together at commit (a refused settle truncates its own)."""
    positions: dict[Key, Position] = field(default_factory=dict)
    event_ids: list[str] = field(default_factory=list)


def request_hash(command: Command) -> str:
    """A digest of the command's kind and every field value, in declared order."""
    # flat models (the hot path) hold plain str/int/None values; a settle nests its legs
    flat = type(command) is not Settle
    canonical = (type(command).__name__, *command.__dict__.values()) if flat else _canonical(command)
    return hashlib.sha256(repr(canonical).encode()).hexdigest()


def _canonical(value: Any) -> Any:
    """Plain tuples of a model's field values (nested models included): cheap to repr, stable."""
    if isinstance(value, BaseModel):
        return (type(value).__name__, *(_canonical(v) for v in value.__dict__.values()))
    if isinstance(value, list):
        return tuple(_canonical(v) for v in value)
    return value


#: Legs that move available money directly, without a hold.
_UNHELD: dict[LegKind, EventType] = {LegKind.CREDIT: EventType.CREDITED, LegKind.CHARGE: EventType.CHARGED}


class EventStore:
    """SQLite-backed event store for one wallet partition."""

    def __init__(
        self, path: Path, *, partition: int = 0, snapshot_every: int = 500, synchronous: str = "FULL"
    ) -> None:
        self.path = path
        self.partition = partition
        self.snapshot_every = snapshot_every
        self.db = open_db(path, synchronous=synchronous)
        # A deposit dirties ~4 random B-tree pages (ops, the events index, balances); checkpointing
        # every 1,000 WAL pages (SQLite's default) copied them out every few batches, inside a
        # COMMIT. The bound is high so that the node's `Checkpointer` does it, off the writer's loop.
        self.db.execute(f"PRAGMA wal_autocheckpoint={WAL_CHECKPOINT_PAGES}")
        self.ledger_id = ledger_id(self.db, partition)
        # The relay cursor lives in memory and is saved with the next batch (or on close): it needs
        # no fsync of its own, since a republished event is dropped by its msg-id and the relay
        # re-reads the stream's tail on start.
        self._relayed = int(self.db.execute("SELECT value FROM meta WHERE key='relayed_seq'").fetchone()[0])
        self._relayed_saved = self._relayed
        self._positions: dict[Key, Position] = {}
        self._next_seq = self._max_seq() + 1

    def _max_seq(self) -> int:
        return int(self.db.execute("SELECT COALESCE(MAX(seq), 0) FROM events").fetchone()[0])

    def close(self) -> None:
        """Save the relay cursor and close the connection (the WAL is checkpointed by SQLite)."""
        if self._relayed != self._relayed_saved:
            self.db.execute("UPDATE meta SET value = ? WHERE key = 'relayed_seq'", (str(self._relayed),))
        self.db.close()

    # --- commands --------------------------------------------------------------------------------

    def execute_batch(self, commands: list[tuple[Command, str | None]]) -> list[Outcome]:
        """Apply `(command, traceparent)` pairs in one transaction; durable when this returns.

        The op_id records the batch needs are read in one query, and its event and op_id rows are
        written with one `executemany` each: per-statement overhead was a third of the store's time.
        """
        outcomes: list[Outcome] = []
        staged: dict[Key, Position] = {}
        rows: list[tuple[Any, ...]] = []
        records: list[tuple[Any, ...]] = []
        cur = self.db.cursor()
        cur.execute("BEGIN IMMEDIATE")
        try:
            known = self._recorded(cur, [command.op_id for command, _ in commands])
            for command, traceparent in commands:
                outcomes.append(self._run_one(cur, staged, rows, records, known, command, traceparent))
            cur.executemany(
                "INSERT INTO events(seq, account, asset, version, type, amount, hold_id, op_id, ts_ns, "
                "prev_hash, hash, traceparent) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            cur.executemany("INSERT INTO ops(op_id, request_hash, reply, ts_ns) VALUES (?,?,?,?)", records)
            cur.executemany(
                "INSERT INTO balances(account, asset, available, held, version, head) "
                "VALUES (?,?,?,?,?,?) ON CONFLICT(account, asset) DO UPDATE SET "
                "available=excluded.available, held=excluded.held, version=excluded.version, "
                "head=excluded.head",
                [(a, s, p.available, p.held, p.version, p.head) for (a, s), p in staged.items()],
            )
            relayed = self._relayed
            if relayed != self._relayed_saved:
                cur.execute("UPDATE meta SET value = ? WHERE key = 'relayed_seq'", (str(relayed),))
            cur.execute("COMMIT")
            self._relayed_saved = relayed
        except BaseException:
            if self.db.in_transaction:
                cur.execute("ROLLBACK")
            self._positions.clear()  # the cache may hold staged state that never committed
            self._next_seq = self._max_seq() + 1
            raise
        self._positions.update(staged)
        return outcomes

    @staticmethod
    def _recorded(cur: sqlite3.Cursor, op_ids: list[str]) -> dict[str, tuple[str, bytes]]:
        """op_id -> (request hash, recorded reply) for those of `op_ids` already applied."""
        found: dict[str, tuple[str, bytes]] = {}
        unique = list(dict.fromkeys(op_ids))
        for start in range(0, len(unique), 500):  # SQLite caps bound parameters per statement
            chunk = unique[start:start + 500]
            marks = ",".join("?" * len(chunk))
            for op_id, digest, reply in cur.execute(
                f"SELECT op_id, request_hash, reply FROM ops WHERE op_id IN ({marks})", chunk
            ):
                found[op_id] = (digest, reply)
        return found

    def _run_one(
        self, cur: sqlite3.Cursor, staged: dict[Key, Position], rows: list[tuple[Any, ...]],
        records: list[tuple[Any, ...]], known: dict[str, tuple[str, bytes]], command: Command,
        traceparent: str | None,
    ) -> Outcome:
        digest = request_hash(command)
        recorded = known.get(command.op_id)
        if recorded is not None:
            if recorded[0] != digest:
                return Outcome(None, QtError(
                    ErrorCode.IDEMPOTENCY_CONFLICT,
                    f"op_id {command.op_id!r} was already used for a different command",
                    {"op_id": command.op_id},
                ))
            return _decode_recorded(recorded[1])
        scope = _Scope(cur, staged, command.op_id, traceparent, rows)
        # A single-event command checks everything before its first write, so only a multi-leg
        # settle can fail half-way and needs a savepoint (and a row truncation) to undo its legs.
        multi = type(command) is Settle
        mark = len(rows)
        if multi:
            cur.execute("SAVEPOINT cmd")
        try:
            self._apply(scope, command)
        except QtError as error:
            if multi:
                cur.execute("ROLLBACK TO cmd")
                cur.execute("RELEASE cmd")
                del rows[mark:]
                self._next_seq -= len(scope.event_ids)
            if error.code in BUSINESS_CODES:
                self._record(records, known, command.op_id, digest, {"error": error.to_body()})
            return Outcome(None, error)
        if multi:
            cur.execute("RELEASE cmd")
        staged.update(scope.positions)
        reply = MutationView(command.op_id, [
            {"account": a, "asset": s, "available": p.available, "held": p.held, "version": p.version}
            for (a, s), p in scope.positions.items()
        ], scope.event_ids)
        self._record(records, known, command.op_id, digest, {"ok": reply.to_wire(Wire.MSGPACK)})
        return Outcome(reply, None)

    @staticmethod
    def _record(records: list[tuple[Any, ...]], known: dict[str, tuple[str, bytes]], op_id: str,
                digest: str, result: dict[str, Any]) -> None:
        blob = msgpack.packb(result, use_bin_type=True)
        records.append((op_id, digest, blob, time.time_ns()))
        known[op_id] = (digest, blob)  # a duplicate later in the same batch replays this answer

    def _apply(self, scope: _Scope, command: Command) -> None:
        kind = type(command)  # exact types: Withdraw/Credit subclass Deposit, Debit subclasses Hold
        plain = _PLAIN.get(kind)
        if plain is not None:
            assert isinstance(command, Deposit)
            self._append(scope, command.account, command.asset, plain, command.amount)
        elif kind is Settle:
            assert isinstance(command, Settle)
            for leg in command.legs:
                self._leg(scope, leg)
        elif kind is Hold:
            assert isinstance(command, Hold)
            self._open_hold(scope, command)
        else:
            assert isinstance(command, Release | Debit)
            if kind is Debit:
                leg = Leg(kind=LegKind.DEBIT, account=command.account, asset=command.asset,
                          amount=command.amount, hold_id=command.hold_id)
            else:
                assert isinstance(command, Release)
                leg = Leg(kind=LegKind.RELEASE, account=command.account, asset=command.asset,
                          amount=command.amount, hold_id=command.hold_id, total_debits=command.total_debits)
            self._leg(scope, leg)

    def _open_hold(self, scope: _Scope, command: Hold) -> None:
        # The primary key refuses a taken hold_id: no lookup first (a third of a hold's SQL). The row
        # goes in before the checks below, so a refusal after it deletes it again; the position is
        # staged first, since loading it reads the open holds and must not see this one.
        pos = self._stage(scope, (command.account, command.asset))
        try:
            scope.cur.execute(
                "INSERT INTO holds(hold_id, account, asset, amount, remaining) VALUES (?,?,?,?,?)",
                (command.hold_id, command.account, command.asset, command.amount, command.amount),
            )
        except sqlite3.IntegrityError as exc:
            if "holds.hold_id" not in str(exc):
                raise
            raise QtError(ErrorCode.HOLD_EXISTS, f"hold {command.hold_id!r} already exists",
                          {"hold_id": command.hold_id}) from None
        try:
            if pos.version == 0 and not scope.cur.execute(
                "SELECT 1 FROM balances WHERE account=? LIMIT 1", (command.account,)
            ).fetchone():  # only an account's very first touch of an asset pays for this lookup
                raise QtError(ErrorCode.UNKNOWN_ACCOUNT, f"unknown account {command.account!r}",
                              {"account": command.account})
            self._append(scope, command.account, command.asset, EventType.HELD, command.amount,
                         command.hold_id)
        except QtError:
            scope.cur.execute("DELETE FROM holds WHERE hold_id=?", (command.hold_id,))
            raise

    def _leg(self, scope: _Scope, leg: Leg) -> None:
        if leg.kind in _UNHELD:
            if leg.amount is None:
                raise QtError(ErrorCode.VALIDATION, f"a {leg.kind} leg needs an amount")
            self._append(scope, leg.account, leg.asset, _UNHELD[leg.kind], leg.amount)
            return
        if leg.hold_id is None:
            raise QtError(ErrorCode.VALIDATION, f"a {leg.kind} leg needs a hold_id")
        row = scope.cur.execute(
            "SELECT account, asset, remaining, amount, released FROM holds WHERE hold_id=?", (leg.hold_id,)
        ).fetchone()
        if row is None:
            raise QtError(ErrorCode.UNKNOWN_HOLD, f"no hold {leg.hold_id!r}", {"hold_id": leg.hold_id})
        if (row[0], row[1]) != (leg.account, leg.asset):
            raise QtError(
                ErrorCode.HOLD_MISMATCH,
                f"hold {leg.hold_id!r} belongs to another account or asset",
                {"hold_id": leg.hold_id},
            )
        amount = leg.amount
        if leg.total_debits is not None:  # release down to what the hold will still pay out
            amount = row[3] - row[4] - leg.total_debits
            if amount <= 0:
                return
        elif amount is None:  # release the whole remainder; nothing left is not an error
            if leg.kind is LegKind.DEBIT:
                raise QtError(ErrorCode.VALIDATION, "a debit leg needs an amount")
            if row[2] == 0:
                return
            amount = row[2]
        type_ = EventType.DEBITED if leg.kind is LegKind.DEBIT else EventType.RELEASED
        self._append(scope, leg.account, leg.asset, type_, amount, leg.hold_id)
        released = amount if type_ is EventType.RELEASED else 0
        scope.cur.execute("UPDATE holds SET remaining = remaining - ?, released = released + ? WHERE hold_id=?",
                          (amount, released, leg.hold_id))

    def _append(
        self, scope: _Scope, account: str, asset: str, type_: EventType, amount: int,
        hold_id: str | None = None,
    ) -> None:
        cur = scope.cur
        pos = self._stage(scope, (account, asset))
        check_room(pos, type_, amount, asset)
        fold(pos, type_, amount, hold_id, asset)
        ts_ns = time.time_ns()
        prev = pos.head
        pos.head = event_hash(prev, account, asset, pos.version, type_, amount, hold_id, scope.op_id,
                              ts_ns)
        seq = self._next_seq
        self._next_seq += 1
        scope.rows.append((seq, account, asset, pos.version, str(type_), amount, hold_id, scope.op_id, ts_ns,
                           prev, pos.head, scope.traceparent))
        scope.event_ids.append(wallet_msg_id(self.ledger_id, seq))
        if pos.version % self.snapshot_every == 0:
            cur.execute(
                "INSERT INTO snapshots(account, asset, version, seq, available, held, head, holds) "
                "VALUES (?,?,?,?,?,?,?,?)",
                (account, asset, pos.version, seq, pos.available, pos.held, pos.head,
                 json.dumps(pos.holds, sort_keys=True)),
            )

    def _stage(self, scope: _Scope, key: Key) -> Position:
        """The command's private copy of a position, loaded once per batch from cache or disk."""
        pos = scope.positions.get(key)
        if pos is not None:
            return pos
        base = scope.staged.get(key) or self._positions.get(key) or self._load(scope.cur, key)
        pos = scope.positions[key] = base.copy()
        return pos

    def _load(self, cur: sqlite3.Cursor, key: Key) -> Position:
        row = cur.execute(
            "SELECT available, held, version, head FROM balances WHERE account=? AND asset=?", key
        ).fetchone()
        if row is None:
            return Position()
        holds = dict(cur.execute(
            "SELECT hold_id, remaining FROM holds WHERE account=? AND asset=? AND remaining > 0", key
        ).fetchall())
        return Position(row[0], row[1], row[2], row[3], holds)

    def invalidate(self) -> None:
        """Forget cached positions (after a rebuild rewrote the projection)."""
        self._positions.clear()

    # --- outbox ------------------------------------------------------------------------------------

    def outbox_batch(self, limit: int = 1000) -> list[tuple[int, str, str, bytes, str | None]]:
        """Unrelayed events in order: `(seq, subject, msg_id, payload, traceparent)`."""
        rows = self.db.execute(
            "SELECT seq, account, asset, version, type, amount, hold_id, op_id, ts_ns, prev_hash, hash, "
            "traceparent FROM events WHERE seq > ? ORDER BY seq LIMIT ?",
            (self._relayed, limit),
        ).fetchall()
        out = []
        for row in rows:
            # the `WalletEvent` shape, built straight from the row: these values were validated on
            # the way in and hashed; a model per relayed event was 10% of the wallet's CPU
            body = dict(zip(_EVENT_FIELDS, row[:11], strict=True))
            body["event_id"] = event_id = wallet_msg_id(self.ledger_id, row[0])
            out.append((row[0], wallet_event_subject(row[1], row[2]), event_id,
                        msgpack.packb(body, use_bin_type=True), row[11]))
        return out

    def outbox_ack(self, upto_seq: int) -> int:
        """Move the relay cursor to `upto_seq` (the stream has everything up to it); 1 if it moved.

        One int, saved with the next commit: it costs no write of its own.
        """
        if upto_seq <= self._relayed:
            return 0
        self._relayed = upto_seq
        return 1


#: The `events` columns both readers select, in this order; with `event_id` they are a `WalletEvent`.
_EVENT_FIELDS = ("seq", "account", "asset", "version", "type", "amount", "hold_id", "op_id", "ts_ns",
                 "prev_hash", "hash")


def event_from_row(ledger: str, row: tuple[Any, ...]) -> WalletEvent:
    """A `WalletEvent` from an `events` row selected in `_EVENT_FIELDS` order."""
    body = dict(zip(_EVENT_FIELDS, row, strict=True))
    return WalletEvent(**body, event_id=wallet_msg_id(ledger, body["seq"]))


def _decode_recorded(blob: bytes) -> Outcome:
    recorded = msgpack.unpackb(blob, raw=False)
    if "error" in recorded:
        return Outcome(None, QtError.from_body(recorded["error"]), replayed=True)
    ok = MutationReply.model_validate(recorded["ok"])  # a stored record is re-checked against the contract
    return Outcome(MutationView(ok.op_id, [c.model_dump() for c in ok.changes], ok.event_ids), None, replayed=True)
