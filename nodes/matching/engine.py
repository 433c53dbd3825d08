"""The deterministic engine of one instrument: journal entries in, results and execution reports out.

No I/O: the node feeds it the `ORDERS` journal in stream order and does the publishing. Because
`apply` is a pure function of (state, entry), a replay from zero or from any snapshot reaches the
identical book, order records and results.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Final

from contracts.instruments import Instrument
from contracts.matching import OrderStatus
from nodes.matching.book import Book

#: Journal operations.
NEW: Final = "new"
CANCEL: Final = "cancel"
REPLACE: Final = "replace"
#: A journal entry holding many commands (`{"op": "batch", "commands": [...]}`): one append, one fsync.
BATCH: Final = "batch"
#: The reason of a cancel/replace that names no order of its account (another's is not disclosed).
UNKNOWN_ORDER: Final = "unknown_order"
#: Refusals of cancels/replaces naming unknown order ids an engine keeps (oldest forgotten first): any
#: caller can name random ids, so keeping them all would let one grow the engine's memory without bound.
REFUSALS_KEPT: Final = 10_000


@dataclass(slots=True)
class OrderRecord:
    """What the engine knows of an order for `matching.order`: its terms, fills and status."""

    order_id: str
    account: str
    side: str
    price: int | None
    qty: int
    filled: int = 0
    executed_value: int = 0
    """Quote units of every fill so far, each rounded down (Coinbase's `executed_value`)."""
    status: str = OrderStatus.NEW
    reason: str | None = None
    fills: list[dict[str, Any]] = field(default_factory=list)

    def as_result(self, instrument: str, seq: int, fills: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        """The `OrderResult` body (integer units) with `fills` (default: all of them)."""
        return {
            "order_id": self.order_id, "instrument": instrument, "account": self.account,
            "side": self.side, "status": self.status, "price": self.price, "qty": self.qty,
            "filled": self.filled, "executed_value": self.executed_value, "remaining": self.remaining,
            "reason": self.reason,
            "fills": list(self.fills if fills is None else fills), "journal_seq": seq,
        }

    @property
    def remaining(self) -> int:
        """Open quantity: zero once filled, cancelled or rejected."""
        if self.status in (OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED):
            return self.qty - self.filled
        return 0


def command_key(entry: dict[str, Any]) -> str:
    """The identity of a command: also the `Nats-Msg-Id` of a journal entry that holds only it."""
    op = entry["op"]
    if op == NEW:
        return f"new:{entry['order_id']}"
    if op == CANCEL:  # the account is part of it: a stranger's refused cancel must not shadow the owner's
        return f"cancel:{entry['account']}:{entry['order_id']}"
    return f"replace:{entry['account']}:{entry['order_id']}:{entry['price']}:{entry['qty']}"


class InstrumentEngine:
    """A book plus the order records and per-command results derived from the journal."""

    def __init__(self, spec: Instrument) -> None:
        self.spec = spec
        self.book = Book.for_instrument(spec)
        self.applied_seq = 0
        self.orders: dict[str, OrderRecord] = {}
        self.results: dict[str, dict[str, Any]] = {}
        self.refusals: dict[str, dict[str, Any]] = {}
        """Latest answer to a cancel/replace that named an order id the engine has not seen: answered, never
        kept as the key's result, because the order may still arrive (a cancel racing its own order's submit)
        and the same command must then act on it instead of replaying `unknown_order`. The newest
        `REFUSALS_KEPT` only, oldest first; not in snapshots (a refusal changes nothing)."""
        self._quote_factor = 10**spec.qty_scale

    def apply(self, seq: int, entry: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Apply single-command journal entry `seq`; returns (the command's result, its execution reports)."""
        if seq <= self.applied_seq:
            raise ValueError(f"journal entry {seq} already applied (at {self.applied_seq})")
        reports: list[dict[str, Any]] = []
        result = self._command(seq, entry, reports)
        self.applied_seq = seq
        return result, reports

    def apply_entry(self, seq: int, entry: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply journal entry `seq`, one command or a batch of them in order; returns every execution report.

        Each command's result lands in `results` under its command key; they all carry `journal_seq` = `seq`.
        """
        if seq <= self.applied_seq:
            raise ValueError(f"journal entry {seq} already applied (at {self.applied_seq})")
        reports: list[dict[str, Any]] = []
        if entry["op"] == BATCH:
            command = self._command
            for each in entry["commands"]:
                command(seq, each, reports)
        else:
            self._command(seq, entry, reports)
        self.applied_seq = seq
        return reports

    def _command(self, seq: int, entry: dict[str, Any], reports: list[dict[str, Any]]) -> dict[str, Any]:
        """One command: its result (the first one again for a repeated command key), reports appended."""
        key = command_key(entry)
        first = self.results.get(key)
        if first is not None:  # the same command journaled twice (past the dedup window, or in two batches)
            return first
        op = entry["op"]
        if op == NEW:
            result, more = self._new(seq, entry)
        elif op == CANCEL:
            result, more = self._cancel(seq, entry)
        elif op == REPLACE:
            result, more = self._replace(seq, entry)
        else:
            raise ValueError(f"unknown journal op {op!r}")
        if op != NEW and result["reason"] == UNKNOWN_ORDER and entry["order_id"] not in self.orders:
            self.refusals.pop(key, None)  # the newest refusal is the last one forgotten
            self.refusals[key] = result
            if len(self.refusals) > REFUSALS_KEPT:
                del self.refusals[next(iter(self.refusals))]
        else:  # final: an order that is done (or another account's) never becomes this caller's again
            self.results[key] = result
            if self.refusals:
                self.refusals.pop(key, None)
        reports += more
        return result

    def _new(self, seq: int, entry: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        order_id = entry["order_id"]
        record = OrderRecord(order_id, entry["account"], entry["side"], entry.get("price"), entry["qty"])
        if order_id in self.orders:  # ids are unique over the whole history, not only the open book
            record.status, record.reason = OrderStatus.REJECTED, "duplicate_order_id"
            report = self._report(seq, "rejected", order_id, reason=record.reason)
            return record.as_result(self.spec.symbol, seq), [report]
        max_quote = entry.get("max_quote")
        events = self.book.submit(
            order_id, entry["account"], entry["side"], entry["type"], entry["qty"], price=entry.get("price"),
            tif=entry.get("tif", "GTC"), post_only=entry.get("post_only", False), stp=entry.get("stp", "dc"),
            max_quote=None if max_quote is None else max_quote * self._quote_factor,
        )
        self.orders[order_id] = record
        fills_now: list[dict[str, Any]] = []
        reports = self._absorb(seq, events, fills_now)
        return record.as_result(self.spec.symbol, seq, fills_now), reports

    def _owned(self, entry: dict[str, Any]) -> OrderRecord | None:
        """The order a cancel/replace names, if it belongs to the caller's account."""
        record = self.orders.get(entry["order_id"])
        return record if record is not None and record.account == entry["account"] else None

    def _unknown(self, seq: int, entry: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Another account's order is reported as unknown: its existence is not disclosed."""
        missing = OrderRecord(entry["order_id"], entry["account"], "", None, 0, status=OrderStatus.REJECTED,
                              reason=UNKNOWN_ORDER)
        return missing.as_result(self.spec.symbol, seq, []), []

    def _cancel(self, seq: int, entry: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        order_id = entry["order_id"]
        record = self._owned(entry)
        if record is None:
            return self._unknown(seq, entry)
        events = self.book.cancel(order_id)
        if events and events[0][0] == "rejected":  # already filled or cancelled: a no-op, not an error
            return record.as_result(self.spec.symbol, seq, []), []
        reports = self._absorb(seq, events, [])
        return record.as_result(self.spec.symbol, seq, []), reports

    def _replace(self, seq: int, entry: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        order_id = entry["order_id"]
        record = self._owned(entry)
        if record is None:
            return self._unknown(seq, entry)
        fills_now: list[dict[str, Any]] = []
        events = self.book.replace(order_id, entry["price"], entry["qty"])
        if events and events[0][0] == "rejected":
            result = record.as_result(self.spec.symbol, seq, [])
            result["status"], result["reason"] = OrderStatus.REJECTED, events[0][2]
            return result, [self._report(seq, "rejected", order_id, reason=events[0][2])]
        reports = self._absorb(seq, events, fills_now)
        return record.as_result(self.spec.symbol, seq, fills_now), reports

    def _absorb(self, seq: int, events: list[tuple[Any, ...]], fills_now: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Fold book events into order records; one execution report per event."""
        reports = []
        symbol = self.spec.symbol
        for event in events:
            kind = event[0]
            if kind == "fill":
                _, trade_no, taker_id, taker_acc, maker_id, maker_acc, price, qty, m_rem, taker_side, _t_rem = event
                value = price * qty // self._quote_factor
                taker, maker = self.orders[taker_id], self.orders[maker_id]
                taker.executed_value += value
                maker.executed_value += value
                fill = {"trade_id": f"{symbol}-{trade_no}", "instrument": symbol, "price": price, "qty": qty,
                        "maker_order_id": maker_id, "taker_order_id": taker_id, "maker_account": maker_acc,
                        "taker_account": taker_acc, "taker_side": taker_side, "maker_remaining": m_rem,
                        "maker_executed_value": maker.executed_value, "taker_executed_value": taker.executed_value}
                fills_now.append(fill)
                for rec in (taker, maker):
                    rec.filled += qty
                    rec.fills.append(fill)
                    rec.status = OrderStatus.FILLED if rec.filled == rec.qty else OrderStatus.PARTIALLY_FILLED
                reports.append(self._report(seq, "fill", taker_id, **fill))
            elif kind == "cancelled":
                _, oid, acc, qty, reason = event
                rec = self.orders[oid]
                rec.status, rec.reason = OrderStatus.CANCELLED, reason
                reports.append(self._report(seq, "cancelled", oid, account=acc, qty=qty, reason=reason))
            elif kind == "decreased":
                _, oid, acc, qty, remaining, reason = event
                rec = self.orders[oid]
                rec.qty -= qty  # self-trade prevention shrank the order: it will never fill that part
                reports.append(self._report(seq, "decreased", oid, account=acc, qty=qty, remaining=remaining,
                                            reason=reason))
            elif kind == "replaced":
                _, oid, acc, price, qty, kept = event
                rec = self.orders[oid]
                rec.price, rec.qty = price, rec.filled + qty
                reports.append(self._report(seq, "replaced", oid, account=acc, price=price, qty=qty,
                                            kept_priority=kept))
            elif kind == "rejected":
                _, oid, reason = event
                rec = self.orders[oid]
                rec.status, rec.reason = OrderStatus.REJECTED, reason
                reports.append(self._report(seq, "rejected", oid, reason=reason))
            elif kind == "accepted":
                reports.append(self._report(seq, "accepted", event[1], account=self.orders[event[1]].account))
        return reports

    def _report(self, seq: int, kind: str, order_id: str, **fields: Any) -> dict[str, Any]:
        return {"kind": kind, "instrument": self.spec.symbol, "orders_seq": seq, "order_id": order_id, **fields}

    # --- snapshots -----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Everything needed to continue exactly where this engine is (plain msgpack-able data)."""
        return {
            "instrument": self.spec.symbol,
            "applied_seq": self.applied_seq,
            "book": self.book.snapshot(),
            "orders": [
                [r.order_id, r.account, r.side, r.price, r.qty, r.filled, r.executed_value, str(r.status), r.reason,
                 r.fills]
                for r in self.orders.values()
            ],
            "results": self.results,
        }

    @classmethod
    def restore(cls, spec: Instrument, snap: dict[str, Any]) -> InstrumentEngine:
        """An engine identical to the one that took `snap`."""
        if snap["instrument"] != spec.symbol:
            raise ValueError(f"snapshot of {snap['instrument']} given for {spec.symbol}")
        engine = cls(spec)
        engine.book = Book.restore(snap["book"])
        engine.applied_seq = snap["applied_seq"]
        for oid, account, side, price, qty, filled, value, status, reason, fills in snap["orders"]:
            engine.orders[oid] = OrderRecord(oid, account, side, price, qty, filled, value, OrderStatus(status),
                                             reason, fills)
        engine.results = dict(snap["results"])
        return engine
