"""The pure matching core: one instrument's order book with price-time priority, in integer units.

No I/O and no clock: the same commands in the same order give the same events, state and checksum,
which is what lets the engine journal commands and rebuild a book by replay.

Commands (each returns the list of events it caused, in order; a rejected command changes nothing):
    submit(order_id, account, side, order_type, qty, price=None, tif="GTC", post_only=False,
           stp="dc", max_quote=None)        # max_quote: MARKET BUY only, cap on sum(price * qty)
    cancel(order_id, account=None)          # account given: only its owner may
    replace(order_id, price, qty, account=None)  # qty = the new open size; keeps time priority only
                                            # if the price is unchanged and the size decreases
Events are plain tuples, the kind first:
    ("accepted", order_id)
    ("fill", trade_id, taker_id, taker_account, maker_id, maker_account, price, qty,
     maker_remaining, taker_side, taker_remaining)
    ("cancelled", order_id, account, qty, reason)      # qty: what was open and is now gone
    ("decreased", order_id, account, qty, remaining, reason)   # self-trade "dc" on the larger side
    ("replaced", order_id, account, price, qty, kept_priority)
    ("rejected", order_id, reason)                      # nothing changed
A submitted order rests iff it was accepted, is not cancelled by its events and has remaining > 0;
`order(order_id)` says so. Order ids must be unique among the orders the book holds (a filled or
cancelled id leaves the book); uniqueness over history is the journal's job (msg-id dedup).

Checksum (Kraken v2 style): for the top 10 ask levels ascending then the top 10 bid levels
descending, concatenate str(price) + str(total_qty) of each level (integers in the instrument's
units: the same as Kraken's "decimal point removed, leading zeros stripped" on fixed-scale strings)
and CRC32 the ASCII. Computed on demand by `checksum()`.

Performance layout (why it looks like this): one dict key -> level and one sorted key list per side,
with bid keys negated so both sides are "ascending = best first" and one matching loop serves both;
a level is a list [total_qty, dead_count, order, order, ...] (oldest first; a small list is far
cheaper to create than a deque, and a thin book creates and drops levels all the time); an order is an
`_Order` with slots (compiled, a C struct with machine-int fields: one memory read where a list needs
three, which is what a deep book's random cancels pay for).
Cancel is O(1): an order at either end of its level is removed, any other gets
remaining 0 and stays until matching drops the run of them or the level is compacted or emptied.
The module is longer than 400 lines because the hot paths are inlined on purpose: every helper call
costs ~5% of an order here. The package build compiles this same source with mypyc (setup.py;
`nodes/matching/book_build.py` picks the build); the annotations on hot locals are what give it machine ints.

GC: nothing here makes reference cycles, so refcounting frees everything the book drops. CPython's
full collections still walk every tracked container the book holds (~23 ms per million), so the engine
should: gc.collect(); gc.freeze() after loading a snapshot or replaying; run with gc.disable(); call
gc.collect(0) when its command queue is idle; and collect + freeze again after writing a snapshot
(`tooling/bench/engine_runner.py: gc_quiet` is the benchmark's version).
"""

from __future__ import annotations

import zlib
from bisect import bisect_left, insort
from collections.abc import Hashable
from itertools import islice
from typing import Any, Final, NamedTuple, Protocol, final

BUY: Final = "BUY"
SELL: Final = "SELL"
LIMIT: Final = "LIMIT"
MARKET: Final = "MARKET"
GTC: Final = "GTC"
IOC: Final = "IOC"
FOK: Final = "FOK"
STP_MODES: Final = ("dc", "co", "cn", "cb")
"""Self-trade prevention, the taker's mode (Coinbase `stp`): decrease and cancel (default), cancel
oldest (the resting order), cancel newest (the taker), cancel both."""

ACCEPTED: Final = "accepted"
FILL: Final = "fill"
CANCELLED: Final = "cancelled"
DECREASED: Final = "decreased"
REPLACED: Final = "replaced"
REJECTED: Final = "rejected"

# Cancel reasons.
USER: Final = "user"            # cancel() by its owner
IOC_REMAINDER: Final = "ioc"    # IOC remainder after matching
FOK_UNFILLED: Final = "fok"     # FOK that could not fill completely at once: nothing happened
MARKET_REMAINDER: Final = "market"  # MARKET remainder: no more liquidity (MARKET orders never rest)
MAX_QUOTE: Final = "max_quote"  # MARKET BUY stopped before its max_quote would be exceeded
STP: Final = "stp"              # self-trade prevention

REJECT_REASONS: Final = (
    "duplicate_order_id", "invalid_side", "invalid_order_type", "invalid_qty", "qty_off_step",
    "qty_below_min", "invalid_price", "price_off_tick", "market_with_price", "invalid_tif",
    "invalid_stp", "post_only_not_gtc", "invalid_max_quote", "max_quote_not_allowed",
    "post_only_would_take", "unknown_order", "not_owner",
)
"""Every reject reason (the shared ones equal `contracts.errors.ErrorCode` values). Submit checks, in order:
duplicate_order_id, invalid_side, invalid_qty, qty_off_step, qty_below_min; then LIMIT: invalid_price,
price_off_tick, max_quote_not_allowed, or MARKET: market_with_price, post_only_not_gtc, invalid_max_quote,
max_quote_not_allowed (SELL), or invalid_order_type; then invalid_tif, post_only_not_gtc (IOC/FOK),
invalid_stp, post_only_would_take. Replace: unknown_order, not_owner, invalid_qty, qty_off_step,
qty_below_min, invalid_price, price_off_tick, post_only_would_take. Cancel: unknown_order, not_owner."""

_NO_LIMIT: Final = 1 << 80  # a MARKET order's limit key: beyond any price (prices are < 2**63)

Event = tuple[Any, ...]


class TradingRules(Protocol):
    """What the book needs from `contracts.instruments.Instrument` (integer units)."""

    @property
    def tick(self) -> int: ...
    @property
    def lot(self) -> int: ...
    @property
    def min_qty(self) -> int: ...


class OrderState(NamedTuple):
    """A resting order as `order()` reports it."""

    order_id: Hashable
    account: Hashable
    side: str
    price: int
    remaining: int
    qty: int
    """The size it was placed (or last replaced) with."""
    stp: str
    post_only: bool


@final
class _Order:
    """A resting order; `remaining` 0 marks one cancelled lazily (it stays in its level until dropped)."""

    __slots__ = ("account", "key", "order_id", "post_only", "qty", "remaining", "stp")

    def __init__(self, remaining: int, order_id: Hashable, account: Hashable, key: int, qty: int, stp: str,
                 post_only: bool) -> None:
        self.remaining = remaining
        self.order_id = order_id
        self.account = account
        self.key = key
        self.qty = qty
        self.stp = stp
        self.post_only = post_only


@final
class Book:
    """One instrument's limit order book; every command returns its events."""

    __slots__ = ("_ask_keys", "_bid_keys", "_dirty", "_levels", "_orders", "_trade_id", "lot", "min_qty", "tick")

    def __init__(self, tick: int = 1, lot: int = 1, min_qty: int = 1) -> None:
        if tick <= 0 or lot <= 0 or min_qty < lot or min_qty % lot:
            raise ValueError(f"bad trading rules tick={tick} lot={lot} min_qty={min_qty}")
        self.tick = tick
        self.lot = lot
        self.min_qty = min_qty
        self._orders: dict[Hashable, _Order] = {}
        self._levels: dict[int, list[Any]] = {}  # key (ask: price, bid: -price) -> [total, dead, orders...]
        self._bid_keys: list[int] = []  # ascending: best bid (most negative key) first
        self._ask_keys: list[int] = []
        self._dirty: dict[int, None] = {}  # level keys changed since the last drain_deltas()
        self._trade_id = 0

    @classmethod
    def for_instrument(cls, instrument: TradingRules) -> Book:
        """An empty book enforcing the instrument's tick, lot step and minimum quantity."""
        return cls(instrument.tick, instrument.lot, instrument.min_qty)

    # -- commands ----------------------------------------------------------------------------------

    def submit(self, order_id: Hashable, account: Hashable, side: str, order_type: str, qty: Any,  # noqa: PLR0915
               price: Any = None, tif: str = GTC, post_only: bool = False, stp: str = "dc",
               max_quote: Any = None) -> list[Event]:
        """Validate, match, then rest (GTC LIMIT) or cancel the remainder (IOC, FOK, MARKET).

        qty, price and max_quote are ints; typed Any so that the compiled build, like the pure one, rejects a
        float or a bool with its reason rather than raising TypeError at the call."""
        # Literal strings rather than the module constants: a constant is a faster load than a global.
        orders = self._orders
        if order_id in orders:
            return [("rejected", order_id, "duplicate_order_id")]
        if side == "BUY":
            buy = True
        elif side == "SELL":
            buy = False
        else:
            return [("rejected", order_id, "invalid_side")]
        if type(qty) is not int:
            return [("rejected", order_id, "invalid_qty")]
        size: int = qty  # typed from here on (checked first): machine-int arithmetic in the compiled build
        if size < self.min_qty or size % self.lot:  # min_qty >= lot >= 1: covers size <= 0
            return [("rejected", order_id, self._qty_reason(size))]
        lim: int
        if order_type == "LIMIT":
            if type(price) is not int:
                return [("rejected", order_id, "invalid_price")]
            px: int = price
            if px <= 0:
                return [("rejected", order_id, "invalid_price")]
            if px % self.tick:
                return [("rejected", order_id, "price_off_tick")]
            if max_quote is not None:
                return [("rejected", order_id, "max_quote_not_allowed")]
            lim = px if buy else -px
        elif order_type == "MARKET":
            if price is not None:
                return [("rejected", order_id, "market_with_price")]
            if post_only:
                return [("rejected", order_id, "post_only_not_gtc")]
            if max_quote is not None:
                if type(max_quote) is not int or max_quote <= 0:
                    return [("rejected", order_id, "invalid_max_quote")]
                if not buy:
                    return [("rejected", order_id, "max_quote_not_allowed")]
            lim = _NO_LIMIT
        else:
            return [("rejected", order_id, "invalid_order_type")]
        if tif != "GTC":
            if tif != "IOC" and tif != "FOK":  # noqa: PLR1714 (two compares beat building a tuple)
                return [("rejected", order_id, "invalid_tif")]
            if post_only:
                return [("rejected", order_id, "post_only_not_gtc")]
        if stp != "dc" and stp not in STP_MODES:
            return [("rejected", order_id, "invalid_stp")]
        ev: list[Event] = [("accepted", order_id)]
        rem = size
        opp = self._ask_keys if buy else self._bid_keys
        if opp and opp[0] <= lim:
            if post_only:
                return [("rejected", order_id, "post_only_would_take")]
            if tif == "FOK" and not self._fillable(opp, lim, size, account, stp, max_quote, buy):
                ev.append(("cancelled", order_id, account, size, "fok"))
                return ev
            rem = self._take(order_id, account, side, buy, lim, size, stp, max_quote, opp, ev)
            if not rem:
                return ev
        if tif != "GTC" or price is None:  # nothing else rests: FOK (never partial), MARKET, IOC
            ev.append(("cancelled", order_id, account, rem,
                       "fok" if tif == "FOK" else "market" if price is None else "ioc"))
            return ev
        # Rest the (remaining) GTC LIMIT order: `_rest`, inlined for the common passive order. `key` is Any so
        # that the compiled build boxes it once, not once per dict and list operation below.
        key: Any = -lim
        levels = self._levels
        o = _Order(rem, order_id, account, key, size, stp, post_only)
        level = levels.get(key)
        if level is None:
            levels[key] = [rem, 0, o]
            keys = self._bid_keys if buy else self._ask_keys
            if not keys or key < keys[0]:  # a new best level: the common case, no search
                keys.insert(0, key)
            else:
                insort(keys, key)
        else:
            level[0] += rem
            level.append(o)
        orders[order_id] = o
        self._dirty[key] = None
        return ev

    def cancel(self, order_id: Hashable, account: Hashable | None = None) -> list[Event]:
        """Cancel a resting order (of `account`, when given): O(1), unlinked lazily unless at a level's end."""
        o = self._orders.pop(order_id, None)
        if o is None:
            return [("rejected", order_id, "unknown_order")]
        if account is not None and o.account != account:
            self._orders[order_id] = o
            return [("rejected", order_id, "not_owner")]
        rem: int = o.remaining
        key: int = o.key  # `_unlink`, inlined: cancels are a third of a venue's traffic
        level = self._levels[key]
        total: int = level[0] - rem
        o.remaining = 0
        self._dirty[key] = None
        if not total:
            del self._levels[key]
            keys = self._bid_keys if key < 0 else self._ask_keys
            del keys[bisect_left(keys, key)]
        else:
            level[0] = total
            if level[-1] is o:
                level.pop()
                if not level[-1].remaining:
                    _trim(level)
            elif level[2] is o:
                del level[2]
            else:
                dead = level[1] + 1
                level[1] = dead
                if dead > 64 and dead * 5 > (len(level) - 2) * 4:
                    _compact(level)
        return [("cancelled", order_id, o.account, rem, "user")]

    def replace(self, order_id: Hashable, price: Any, qty: Any, account: Hashable | None = None) -> list[Event]:
        """Change a resting order's price and open size; a crossing replacement trades as a taker (ints, typed
        Any as in `submit`)."""
        o = self._orders.get(order_id)
        if o is None:
            return [(REJECTED, order_id, "unknown_order")]
        if account is not None and o.account != account:
            return [(REJECTED, order_id, "not_owner")]
        if type(qty) is not int:
            return [(REJECTED, order_id, "invalid_qty")]
        size: int = qty
        if size < self.min_qty or size % self.lot:
            return [(REJECTED, order_id, self._qty_reason(size))]
        if type(price) is not int:
            return [(REJECTED, order_id, "invalid_price")]
        px: int = price
        if px <= 0:
            return [(REJECTED, order_id, "invalid_price")]
        if px % self.tick:
            return [(REJECTED, order_id, "price_off_tick")]
        key = o.key
        buy = key < 0
        account = o.account
        if key == (-px if buy else px) and size < o.remaining:  # same price, smaller: keeps its priority
            self._levels[key][0] -= o.remaining - size
            o.remaining = o.qty = size
            self._dirty[key] = None
            return [(REPLACED, order_id, account, px, size, True)]
        lim = px if buy else -px
        opp = self._ask_keys if buy else self._bid_keys
        crosses = bool(opp) and opp[0] <= lim
        if crosses and o.post_only:
            return [(REJECTED, order_id, "post_only_would_take")]
        del self._orders[order_id]
        self._unlink(o)
        ev: list[Event] = [(REPLACED, order_id, account, px, size, False)]
        rem = size
        if crosses:
            rem = self._take(order_id, account, BUY if buy else SELL, buy, lim, size, o.stp, None, opp, ev)
        if rem:
            self._rest(_Order(rem, order_id, account, -lim, size, o.stp, o.post_only))
        return ev

    # -- queries -----------------------------------------------------------------------------------

    def __len__(self) -> int:
        """Number of resting orders."""
        return len(self._orders)

    @property
    def trade_id(self) -> int:
        """The last trade id assigned (0 before the first fill)."""
        return self._trade_id

    def best_bid(self) -> tuple[int, int] | None:
        """(price, total qty) of the best bid level, or None."""
        keys = self._bid_keys
        return (-keys[0], self._levels[keys[0]][0]) if keys else None

    def best_ask(self) -> tuple[int, int] | None:
        """(price, total qty) of the best ask level, or None."""
        keys = self._ask_keys
        return (keys[0], self._levels[keys[0]][0]) if keys else None

    def depth(self, n: int = 10) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids, asks) as lists of (price, total qty), best first, at most `n` levels each."""
        levels = self._levels
        return ([(-k, levels[k][0]) for k in self._bid_keys[:n]],
                [(k, levels[k][0]) for k in self._ask_keys[:n]])

    def order(self, order_id: Hashable) -> OrderState | None:
        """The resting order's state, or None if it is not (or no longer) in the book."""
        o = self._orders.get(order_id)
        if o is None:
            return None
        key = o.key
        return OrderState(o.order_id, o.account, BUY if key < 0 else SELL, abs(key), o.remaining, o.qty, o.stp,
                          o.post_only)

    def checksum(self) -> int:
        """CRC32 of the top 10 levels per side, Kraken v2 style (see the module docstring)."""
        levels = self._levels
        text = "".join([f"{k}{levels[k][0]}" for k in self._ask_keys[:10]]
                       + [f"{-k}{levels[k][0]}" for k in self._bid_keys[:10]])
        return zlib.crc32(text.encode("ascii"))

    def drain_deltas(self) -> list[tuple[str, int, int]]:
        """L2 changes since the last drain: (side, price, new level total; 0 = level removed)."""
        dirty = self._dirty
        if not dirty:
            return []
        levels = self._levels
        out = [(BUY if k < 0 else SELL, abs(k), levels[k][0] if k in levels else 0) for k in dirty]
        dirty.clear()
        return out

    def compact(self) -> int:
        """Drop lazily cancelled entries from every level (O(book)); for the engine's idle gaps. Returns
        how many went. Never needed for correctness: matching skips them and cancel bounds them."""
        dropped = 0
        for level in self._levels.values():
            if level[1]:
                dropped += level[1]
                _compact(level)
        return dropped

    # -- snapshot ----------------------------------------------------------------------------------

    def snapshot(self) -> dict[str, Any]:
        """Plain data (msgpack/JSON-able) from which `restore` rebuilds this exact book.

        {"version": 1, "tick", "lot", "min_qty", "trade_id",
         "bids": [[price, [[order_id, account, remaining, qty, stp, post_only], ...]], ...],
         "asks": [...]}  levels best first, orders in time priority.
        """
        levels = self._levels

        def side(keys: list[int], sign: int) -> list[list[Any]]:
            return [[sign * k, [[o.order_id, o.account, o.remaining, o.qty, o.stp, o.post_only]
                                for o in islice(levels[k], 2, None) if o.remaining]]
                    for k in keys]

        return {"version": 1, "tick": self.tick, "lot": self.lot, "min_qty": self.min_qty,
                "trade_id": self._trade_id, "bids": side(self._bid_keys, -1), "asks": side(self._ask_keys, 1)}

    @classmethod
    def restore(cls, snap: dict[str, Any]) -> Book:
        """The book a `snapshot()` was taken of: same orders, priority, trade ids and checksum."""
        if snap.get("version") != 1:
            raise ValueError(f"unsupported book snapshot version {snap.get('version')!r}")
        book = cls(snap["tick"], snap["lot"], snap["min_qty"])
        book._trade_id = int(snap["trade_id"])
        for name, sign in (("bids", -1), ("asks", 1)):
            previous = None
            for price, entries in snap[name]:
                key = sign * price
                if (previous is not None and key <= previous) or not entries:
                    raise ValueError(f"snapshot {name} levels out of order or empty at {price}")
                previous = key
                for oid, account, remaining, qty, stp, post_only in entries:
                    if oid in book._orders or remaining <= 0:
                        raise ValueError(f"snapshot order {oid!r} duplicated or empty")
                    book._rest(_Order(remaining, oid, account, key, qty, stp, bool(post_only)))
        book._dirty.clear()
        return book

    # -- internals ---------------------------------------------------------------------------------

    def _qty_reason(self, qty: int) -> str:
        """Why an int quantity is refused, in the documented order."""
        if qty <= 0:
            return "invalid_qty"
        return "qty_off_step" if qty % self.lot else "qty_below_min"

    def _rest(self, o: _Order) -> None:
        key = o.key
        level = self._levels.get(key)
        if level is None:
            self._levels[key] = [o.remaining, 0, o]
            insort(self._bid_keys if key < 0 else self._ask_keys, key)
        else:
            level[0] += o.remaining
            level.append(o)
        self._orders[o.order_id] = o
        self._dirty[key] = None

    def _unlink(self, o: _Order) -> None:
        """Take a resting order (already gone from `_orders`) out of its level."""
        key = o.key
        level = self._levels[key]
        total = level[0] - o.remaining
        o.remaining = 0
        self._dirty[key] = None
        if not total:
            del self._levels[key]
            keys = self._bid_keys if key < 0 else self._ask_keys
            del keys[bisect_left(keys, key)]
            return
        level[0] = total
        if level[-1] is o:  # the newest: drop it now (cancel-after-place is the common case)
            level.pop()
            if not level[-1].remaining:
                _trim(level)
        elif level[2] is o:
            del level[2]
        else:  # lazily: it stays, with remaining 0, until matching reaches it or the level is compacted
            dead = level[1] + 1
            level[1] = dead
            # Compact only when dead entries outnumber live ones 4:1: memory stays bounded, and the
            # rare O(level) pass (~0.5 ms on a 1,000-order level) stays out of p99.99; `compact()` in
            # the engine's idle gaps does the rest.
            if dead > 64 and dead * 5 > (len(level) - 2) * 4:
                _compact(level)

    def _take(self, oid: Hashable, acc: Hashable, side: str, buy: bool, lim: int, rem: int, stp: str,  # noqa: PLR0915
              cap: int | None, keys: list[int], ev: list[Event]) -> int:
        """Match a taker against `keys` (the opposite side) up to `lim`; its remaining, 0 if done or stopped."""
        levels = self._levels
        orders = self._orders
        dirty = self._dirty
        tid = self._trade_id
        spent = 0
        while keys:
            key: Any = keys[0]  # boxed once for the dict operations below; `k` is its machine int
            k: int = key
            if k > lim:
                break
            level: list[Any] = levels[key]
            price = k if buy else -k
            dirty[key] = None
            while True:
                # Local annotations cost nothing in CPython; they let the mypyc build use machine ints.
                m: _Order = level[2]  # the level's oldest order
                mrem: int = m.remaining
                if not mrem:  # cancelled earlier, unlinked lazily: drop the whole run of them in one move
                    i = 3
                    while not level[i].remaining:  # a live order follows: the level's total is not 0
                        i += 1
                    del level[2:i]
                    level[1] -= i - 2
                    continue
                if m.account == acc:
                    self._trade_id = tid
                    rem = self._self_trade(oid, acc, rem, stp, m, level, key, keys, ev)
                    if not rem:
                        return 0
                    if key in levels:
                        continue
                    break
                fill: int = rem if rem < mrem else mrem
                if cap is not None:
                    afford = (cap - spent) // price
                    afford -= afford % self.lot
                    if afford < fill:
                        if afford <= 0:
                            self._trade_id = tid
                            ev.append(("cancelled", oid, acc, rem, "max_quote"))
                            return 0
                        fill = afford
                    spent += fill * price
                tid += 1
                rem -= fill
                mrem -= fill
                if mrem:
                    m.remaining = mrem
                    level[0] -= fill
                    ev.append(("fill", tid, oid, acc, m.order_id, m.account, price, fill, mrem, side, rem))
                    if rem:
                        continue
                    self._trade_id = tid
                    return 0
                del level[2]  # a fully filled maker leaves the book at once
                del orders[m.order_id]
                ev.append(("fill", tid, oid, acc, m.order_id, m.account, price, fill, 0, side, rem))
                total: int = level[0] - fill
                if total:
                    level[0] = total
                    if rem:
                        continue
                    self._trade_id = tid
                    return 0
                del levels[key]
                del keys[0]
                break
            if not rem:
                break
        self._trade_id = tid
        return rem

    def _self_trade(self, oid: Hashable, acc: Hashable, rem: int, stp: str, m: _Order, level: list[Any],
                    key: int, keys: list[int], ev: list[Event]) -> int:
        """Apply the taker's STP mode against maker `m` (the front of `level`); the taker's remaining."""
        mrem: int = m.remaining
        if stp == "dc" and rem < mrem:  # the taker is the smaller: cancel it, decrease the maker
            m.remaining = mrem - rem
            level[0] -= rem
            ev.append((DECREASED, m.order_id, m.account, rem, mrem - rem, STP))
            ev.append((CANCELLED, oid, acc, rem, STP))
            return 0
        if stp == "cn":
            ev.append((CANCELLED, oid, acc, rem, STP))
            return 0
        del level[2]  # co, cb, and dc with the maker the smaller (or equal): cancel the maker
        del self._orders[m.order_id]
        m.remaining = 0
        total = level[0] - mrem
        if total:
            level[0] = total
        else:
            del self._levels[key]
            del keys[0]
        ev.append((CANCELLED, m.order_id, m.account, mrem, STP))
        if stp == "co":
            return rem
        if stp == "dc" and rem > mrem:
            ev.append((DECREASED, oid, acc, mrem, rem - mrem, STP))
            return rem - mrem
        ev.append((CANCELLED, oid, acc, rem, STP))
        return 0

    def _fillable(self, keys: list[int], lim: int, qty: int, acc: Hashable, stp: str, cap: int | None,
                  buy: bool) -> bool:
        """Whether a FOK taker would fill completely, with the same STP and max_quote rules as `_take`."""
        need = qty
        spent = 0
        levels = self._levels
        for key in keys:
            if key > lim:
                break
            price = key if buy else -key
            for m in islice(levels[key], 2, None):
                mrem = m.remaining
                if not mrem:
                    continue
                if m.account == acc:
                    if stp == "co":
                        continue
                    return False  # dc, cn, cb all end or shrink the taker before it is filled
                fill = need if need < mrem else mrem
                if cap is not None:
                    afford = (cap - spent) // price
                    if afford - afford % self.lot < fill:
                        return False
                    spent += fill * price
                need -= fill
                if not need:
                    return True
        return False


def _trim(level: list[Any]) -> None:
    """Pop lazily cancelled entries off the end of a level that still holds a live order."""
    n = 0
    while not level[-1].remaining:
        level.pop()
        n += 1
    level[1] -= n


def _compact(level: list[Any]) -> None:
    """Rebuild a level without its lazily cancelled entries."""
    level[2:] = [x for x in islice(level, 2, None) if x.remaining]
    level[1] = 0
