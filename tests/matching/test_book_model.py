"""Property tests: the optimised book against a deliberately simple reference model.

The model keeps resting orders in one plain list and sorts it by (price, time) on every step; FOK is
decided by running the order as IOC on a deep copy and checking it filled completely (a different
formulation from the book's look-ahead, so the two check each other).
"""

from __future__ import annotations

import copy
import json
import random
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

if TYPE_CHECKING:
    from nodes.matching.book import Book


Event = tuple[Any, ...]
PROPERTY = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class ReferenceBook:
    """Price-time priority the obvious way: a list of dicts, sorted on demand, no shortcuts."""

    def __init__(self, tick: int, lot: int, min_qty: int) -> None:
        self.tick, self.lot, self.min_qty = tick, lot, min_qty
        self.resting: list[dict[str, Any]] = []
        self.seq = 0
        self.trade_id = 0

    # -- queries
    def queue(self, side: str) -> list[dict[str, Any]]:
        mine = [o for o in self.resting if o["side"] == side]
        return sorted(mine, key=lambda o: (-o["price"] if side == "BUY" else o["price"], o["seq"]))

    def find(self, oid: Any) -> dict[str, Any] | None:
        return next((o for o in self.resting if o["id"] == oid), None)

    def levels(self, side: str) -> list[tuple[int, int]]:
        out: dict[int, int] = {}
        for o in self.queue(side):
            out[o["price"]] = out.get(o["price"], 0) + o["rem"]
        return list(out.items())

    def checksum(self) -> int:
        text = "".join(f"{p}{q}" for p, q in self.levels("SELL")[:10])
        text += "".join(f"{p}{q}" for p, q in self.levels("BUY")[:10])
        return zlib.crc32(text.encode("ascii"))

    def state(self, oid: Any) -> tuple[Any, ...] | None:
        o = self.find(oid)
        if o is None:
            return None
        return (o["id"], o["acc"], o["side"], o["price"], o["rem"], o["qty"], o["stp"], o["post"])

    # -- validation, in the book's documented order
    def qty_reason(self, qty: Any) -> str | None:
        if type(qty) is not int or qty <= 0:
            return "invalid_qty"
        if qty % self.lot:
            return "qty_off_step"
        if qty < self.min_qty:
            return "qty_below_min"
        return None

    def price_reason(self, price: Any) -> str | None:
        if type(price) is not int or price <= 0:
            return "invalid_price"
        if price % self.tick:
            return "price_off_tick"
        return None

    def submit_reason(self, oid: Any, side: Any, typ: Any, qty: Any, price: Any, tif: Any, post: Any, stp: Any,
                      cap: Any) -> str | None:
        if self.find(oid) is not None:
            return "duplicate_order_id"
        if side not in ("BUY", "SELL"):
            return "invalid_side"
        if reason := self.qty_reason(qty):
            return reason
        if typ == "LIMIT":
            if reason := self.price_reason(price):
                return reason
            if cap is not None:
                return "max_quote_not_allowed"
        elif typ == "MARKET":
            if price is not None:
                return "market_with_price"
            if post:
                return "post_only_not_gtc"
            if cap is not None:
                if type(cap) is not int or cap <= 0:
                    return "invalid_max_quote"
                if side != "BUY":
                    return "max_quote_not_allowed"
        else:
            return "invalid_order_type"
        if tif not in ("GTC", "IOC", "FOK"):
            return "invalid_tif"
        if tif != "GTC" and post:
            return "post_only_not_gtc"
        if stp not in ("dc", "co", "cn", "cb"):
            return "invalid_stp"
        return None

    def crosses(self, side: str, price: int | None) -> bool:
        opp = self.queue("SELL" if side == "BUY" else "BUY")
        if not opp:
            return False
        return price is None or (opp[0]["price"] <= price if side == "BUY" else opp[0]["price"] >= price)

    # -- commands
    def submit(self, oid: Any, acc: Any, side: Any, typ: Any, qty: Any, price: Any = None, tif: Any = "GTC",
               post_only: Any = False, stp: Any = "dc", max_quote: Any = None) -> list[Event]:
        if reason := self.submit_reason(oid, side, typ, qty, price, tif, post_only, stp, max_quote):
            return [("rejected", oid, reason)]
        if post_only and self.crosses(side, price):
            return [("rejected", oid, "post_only_would_take")]
        if tif == "FOK":
            trial = copy.deepcopy(self)
            trial_events: list[Event] = []
            trial.take(oid, acc, side, price, qty, stp, max_quote, trial_events)
            if sum(e[7] for e in trial_events if e[0] == "fill") != qty:
                return [("accepted", oid), ("cancelled", oid, acc, qty, "fok")]
        ev: list[Event] = [("accepted", oid)]
        rem = self.take(oid, acc, side, price, qty, stp, max_quote, ev)
        if rem:
            if typ == "LIMIT" and tif == "GTC":
                self.rest(oid, acc, side, price, rem, qty, stp, post_only)
            else:
                ev.append(("cancelled", oid, acc, rem, "market" if typ == "MARKET" else tif.lower()))
        return ev

    def cancel(self, oid: Any, account: Any = None) -> list[Event]:
        o = self.find(oid)
        if o is None:
            return [("rejected", oid, "unknown_order")]
        if account is not None and account != o["acc"]:
            return [("rejected", oid, "not_owner")]
        self.resting.remove(o)
        return [("cancelled", oid, o["acc"], o["rem"], "user")]

    def replace(self, oid: Any, price: Any, qty: Any, account: Any = None) -> list[Event]:
        o = self.find(oid)
        if o is None:
            return [("rejected", oid, "unknown_order")]
        if account is not None and account != o["acc"]:
            return [("rejected", oid, "not_owner")]
        if reason := self.qty_reason(qty) or self.price_reason(price):
            return [("rejected", oid, reason)]
        if price == o["price"] and qty < o["rem"]:
            o["rem"] = o["qty"] = qty
            return [("replaced", oid, o["acc"], price, qty, True)]
        if o["post"] and self.crosses(o["side"], price):
            return [("rejected", oid, "post_only_would_take")]
        self.resting.remove(o)
        ev: list[Event] = [("replaced", oid, o["acc"], price, qty, False)]
        rem = self.take(oid, o["acc"], o["side"], price, qty, o["stp"], None, ev)
        if rem:
            self.rest(oid, o["acc"], o["side"], price, rem, qty, o["stp"], o["post"])
        return ev

    def rest(self, oid: Any, acc: Any, side: str, price: int, rem: int, qty: int, stp: str, post: bool) -> None:
        self.seq += 1
        self.resting.append({"id": oid, "acc": acc, "side": side, "price": price, "rem": rem, "qty": qty,
                             "stp": stp, "post": bool(post), "seq": self.seq})

    def take(self, oid: Any, acc: Any, side: str, price: int | None, rem: int, stp: str, cap: int | None,
             ev: list[Event]) -> int:
        spent = 0
        while rem and self.crosses(side, price):
            m = self.queue("SELL" if side == "BUY" else "BUY")[0]
            if m["acc"] == acc:  # self-trade prevention, Coinbase's four modes
                if stp == "dc" and rem < m["rem"]:
                    m["rem"] -= rem
                    ev += [("decreased", m["id"], m["acc"], rem, m["rem"], "stp"), ("cancelled", oid, acc, rem, "stp")]
                    return 0
                if stp == "cn":
                    ev.append(("cancelled", oid, acc, rem, "stp"))
                    return 0
                self.resting.remove(m)
                ev.append(("cancelled", m["id"], m["acc"], m["rem"], "stp"))
                if stp == "co":
                    continue
                if stp == "dc" and rem > m["rem"]:
                    rem -= m["rem"]
                    ev.append(("decreased", oid, acc, m["rem"], rem, "stp"))
                    continue
                ev.append(("cancelled", oid, acc, rem, "stp"))
                return 0
            fill = min(rem, m["rem"])
            if cap is not None:
                afford = (cap - spent) // m["price"]
                afford -= afford % self.lot
                if afford <= 0:
                    ev.append(("cancelled", oid, acc, rem, "max_quote"))
                    return 0
                fill = min(fill, afford)
                spent += fill * m["price"]
            m["rem"] -= fill
            rem -= fill
            self.trade_id += 1
            ev.append(("fill", self.trade_id, oid, acc, m["id"], m["acc"], m["price"], fill, m["rem"], side, rem))
            if not m["rem"]:
                self.resting.remove(m)
        return rem


# -- command streams ---------------------------------------------------------------------------------

RULES = [(1, 1, 1), (5, 10, 20)]  # (tick, lot, min_qty)
IDS = [f"o{i}" for i in range(16)]
ACCOUNTS = ["A", "B", "C"]


def decode(rules: tuple[int, int, int], seed: int) -> tuple[Any, ...]:
    """One command from one drawn integer: cheap to generate (hypothesis draws one value per command, and
    still shrinks a failing stream to its fewest commands), with ~5% invalid values mixed in."""
    tick, lot, min_qty = rules
    rng = random.Random(seed)

    def mostly(good: Any, bad: list[Any], bad_percent: int = 5) -> Any:
        return rng.choice(bad) if rng.randrange(100) < bad_percent else good

    price = mostly(rng.randint(96, 104) * tick, [0, -tick, 100 * tick + (1 if tick > 1 else 0), None])
    qty = mostly(rng.randint(min_qty // lot, 6) * lot, [0, -lot, lot + (1 if lot > 1 else 0), min_qty - lot or 0])
    oid = rng.choice(IDS)
    account = rng.choice(ACCOUNTS)
    roll = rng.randrange(100)
    if roll < 60:
        return ("submit", oid, account, mostly(rng.choice(["BUY", "SELL"]), ["HOLD"], 2),
                mostly("LIMIT", ["STOP"], 2), qty, price, mostly(rng.choice(["GTC"] * 4 + ["IOC", "FOK"]), ["DAY"], 2),
                mostly(False, [True], 12), mostly(rng.choice(["dc", "dc", "co", "cn", "cb"]), ["xx"], 2),
                mostly(None, [1], 2))
    if roll < 70:
        cap = rng.choice([None, rng.randint(1, 700) * tick * lot])
        return ("submit", oid, account, rng.choice(["BUY", "BUY", "SELL"]), "MARKET", qty,
                mostly(None, [100 * tick]), rng.choice(["GTC", "IOC", "IOC", "FOK"]), mostly(False, [True]),
                rng.choice(["dc", "co", "cn", "cb"]), mostly(cap, [0, -1]))
    target = oid if rng.randrange(100) < 30 else ("live", rng.randrange(16))  # mostly an order resting now
    if roll < 83:
        return ("cancel", target, mostly(None, [account], 15))
    if roll < 97:
        return ("replace", target, rng.choice([price, "same"]), rng.choice([qty, "smaller"]),
                mostly(None, [account], 15))
    return ("snapshot",)


def commands(rules: tuple[int, int, int]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
    """Streams of submits, cancels, replaces and snapshot points."""
    return st.lists(st.integers(0, 2**32).map(lambda seed: decode(rules, seed)), min_size=25, max_size=80)


streams = st.sampled_from(RULES).flatmap(lambda r: st.tuples(st.just(r), commands(r)))


def resolve(book: Book, cmd: tuple[Any, ...]) -> tuple[Any, ...]:
    """Turn ("live", k), "same" price and "smaller" size into concrete values, through the public API."""
    if cmd[0] not in ("cancel", "replace"):
        return cmd
    oid = cmd[1]
    if isinstance(oid, tuple):
        snap = book.snapshot()
        live = sorted(o[0] for level in snap["bids"] + snap["asks"] for o in level[1])
        oid = live[oid[1] % len(live)] if live else "o0"
    if cmd[0] == "cancel":
        return ("cancel", oid, cmd[2])
    _, _, price, qty, account = cmd
    state = book.order(oid)
    if price == "same":
        price = state.price if state else 100
    if qty == "smaller":
        qty = state.remaining - book.lot if state else 1
    return ("replace", oid, price, qty, account)


def apply(book: Any, cmd: tuple[Any, ...]) -> list[Event]:
    """Run one (resolved) command against a Book or a ReferenceBook."""
    if cmd[0] == "submit":
        _, oid, acc, side, typ, q, p, tif, post, stp, cap = cmd
        return book.submit(oid, acc, side, typ, q, p, tif, post, stp, cap)
    if cmd[0] == "cancel":
        return book.cancel(cmd[1], cmd[2])
    return book.replace(*cmd[1:])


def roundtrip(book: Book) -> Book:
    """Snapshot, through JSON (what a journal or a KV store would hold), and restore (same build)."""
    return type(book).restore(json.loads(json.dumps(book.snapshot())))


def run(book_cls: type[Book], rules: tuple[int, int, int], stream: list[tuple[Any, ...]],
        check: Callable[[Book, tuple[Any, ...], list[Event]], None] | None = None,
        snapshots: bool = True) -> tuple[Book, list[list[Event]]]:
    """Drive a Book through the stream (restoring at snapshot points), calling `check` after each command."""
    book = book_cls(*rules)
    out = []
    for drawn in stream:
        if drawn[0] == "snapshot":
            if snapshots:
                book = roundtrip(book)
            continue
        cmd = resolve(book, drawn)
        events = apply(book, cmd)
        out.append(events)
        if check is not None:
            check(book, cmd, events)
    return book, out


def assert_same_state(book: Book, ref: ReferenceBook) -> None:
    bids, asks = book.depth(1000)
    assert bids == ref.levels("BUY")
    assert asks == ref.levels("SELL")
    assert book.checksum() == ref.checksum()
    assert len(book) == len(ref.resting)
    assert book.trade_id == ref.trade_id
    for oid in IDS:
        state = book.order(oid)
        assert (tuple(state) if state else None) == ref.state(oid)


# -- properties --------------------------------------------------------------------------------------

@PROPERTY
@given(streams)
def test_book_matches_reference_model(book_cls: type[Book],
                                      case: tuple[tuple[int, int, int], list[tuple[Any, ...]]]) -> None:
    rules, stream = case
    ref = ReferenceBook(*rules)
    l2: dict[tuple[str, int], int] = {}

    def check(book: Book, cmd: tuple[Any, ...], events: list[Event]) -> None:
        assert events == apply(ref, cmd), cmd
        assert_same_state(book, ref)
        for side, price, total in book.drain_deltas():  # deltas rebuild the L2 view exactly
            if total:
                l2[side, price] = total
            else:
                l2.pop((side, price), None)
        bids, asks = book.depth(1000)
        assert l2 == {**{("BUY", p): q for p, q in bids}, **{("SELL", p): q for p, q in asks}}
        best_bid, best_ask = book.best_bid(), book.best_ask()
        assert best_bid is None or best_ask is None or best_bid[0] < best_ask[0]  # never crossed at rest

    run(book_cls, rules, stream, check)


@PROPERTY
@given(streams)
def test_snapshot_restore_continue_equals_no_snapshot(book_cls: type[Book],
                                                      case: tuple[tuple[int, int, int], list[Any]]) -> None:
    rules, stream = case
    straight, events_straight = run(book_cls, rules, stream, snapshots=False)
    restored, events_restored = run(book_cls, rules, stream, snapshots=True)
    assert events_restored == events_straight
    assert restored.snapshot() == straight.snapshot()
    assert restored.checksum() == straight.checksum()


@PROPERTY
@given(streams)
def test_quantity_is_conserved_per_order(book_cls: type[Book], case: tuple[tuple[int, int, int], list[Any]]) -> None:
    rules, stream = case
    open_qty: dict[Any, int] = {}  # what each live order still has open, according to its events alone

    def check(book: Book, cmd: tuple[Any, ...], events: list[Event]) -> None:
        for e in events:
            if e[0] == "accepted":
                open_qty[e[1]] = cmd[5]
            elif e[0] == "fill":
                open_qty[e[2]] -= e[7]
                open_qty[e[4]] -= e[7]
                assert e[7] > 0 and open_qty[e[2]] == e[10] and open_qty[e[4]] == e[8]
            elif e[0] in ("cancelled", "decreased"):
                open_qty[e[1]] -= e[3]
            elif e[0] == "replaced":
                open_qty[e[1]] = e[4]
        for oid, left in open_qty.items():
            state = book.order(oid)
            assert left == (state.remaining if state else 0), oid

    run(book_cls, rules, stream, check)


@PROPERTY
@given(streams)
def test_fok_ioc_market_post_only_and_max_quote_keep_their_promises(book_cls: type[Book],
                                                                    case: tuple[Any, list[Any]]) -> None:
    rules, stream = case

    def check(book: Book, cmd: tuple[Any, ...], events: list[Event]) -> None:
        if cmd[0] != "submit" or events[0][0] == "rejected":
            return
        _, oid, _acc, _side, typ, qty, _p, tif, post, _stp, cap = cmd
        taken = [e for e in events if e[0] == "fill" and e[2] == oid]
        if tif == "FOK":  # all or nothing
            assert sum(e[7] for e in taken) in (0, qty)
            if not taken:
                assert len(events) == 2 and events[1][4] == "fok"
        if tif != "GTC" or typ == "MARKET":  # IOC, FOK and MARKET never rest
            assert book.order(oid) is None
        if post:
            assert not taken
        if cap is not None:
            assert sum(e[6] * e[7] for e in taken) <= cap

    run(book_cls, rules, stream, check)


def test_long_seeded_stream_matches_reference_model(book_cls: type[Book]) -> None:
    """Build deep levels, cancel most of them, then trade through: lazy unlinking and level compaction."""
    rng = random.Random(7)
    book, ref = book_cls(), ReferenceBook(1, 1, 1)
    for n in range(2400):
        phase_cancels = 0.10 if n < 800 else 0.70 if n < 1600 else 0.30
        live = [o["id"] for o in ref.resting]
        roll = rng.random()
        if roll < phase_cancels and live:
            cmd: tuple[Any, ...] = ("cancel", rng.choice(live), None)
        elif roll < phase_cancels + 0.04 and live:
            cmd = ("replace", rng.choice(live), rng.randint(98, 102), rng.randint(1, 9), None)
        else:
            side = rng.choice(["BUY", "SELL"])
            price = (rng.randint(98, 99) if side == "BUY" else rng.randint(101, 102))
            if rng.random() < 0.06:
                price = 104 if side == "BUY" else 96  # aggressive: sweeps a level or two
            cmd = ("submit", f"x{n}", rng.choice(ACCOUNTS), side, "LIMIT", rng.randint(1, 9), price, "GTC",
                   False, rng.choice(["dc", "co", "cn", "cb"]), None)
        assert apply(book, cmd) == apply(ref, cmd), (n, cmd)
        if n % 200 == 0:
            assert_same_state_all(book, ref)
        if n % 700 == 0:
            book.compact()  # what the engine does in idle gaps: changes no observable state
    assert_same_state_all(book, ref)
    assert roundtrip(book).snapshot() == book.snapshot()


def assert_same_state_all(book: Book, ref: ReferenceBook) -> None:
    bids, asks = book.depth(1000)
    assert (bids, asks) == (ref.levels("BUY"), ref.levels("SELL"))
    assert book.checksum() == ref.checksum() and len(book) == len(ref.resting)
    for o in ref.resting:
        assert tuple(book.order(o["id"]) or ()) == ref.state(o["id"])
