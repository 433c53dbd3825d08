"""One adapter per order book: ours, a bare baseline, and the published Python order books (`qt bench engine`).

Runs inside each engine's own process (peers in a separate venv), so it imports only the standard
library at module level. An adapter turns the workload into a list of prepared native calls
(`prepare`), so the timed loop is the same `f(*args)` for every engine and each one pays only for its own
API; with `record=True` it also collects fills for the cross-check (`stats`, taken after an untimed pass).
Workload ops: [0, order_id, buy (0/1), price, qty] = limit order; [1, order_id] = cancel of a resting order.
"""

from __future__ import annotations

import importlib
import uuid
from bisect import bisect_left, insort
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Call = tuple[Callable[..., Any], tuple[Any, ...]]


@dataclass(frozen=True)
class Peer:
    """A published order book: its PyPI name, import name, whether it is pure Python, and notes."""

    key: str
    pip: str
    module: str
    pure: bool
    note: str = ""
    pip_args: tuple[str, ...] = ()
    """Extra pip arguments (flags, or packages it needs but does not declare)."""


PEERS: tuple[Peer, ...] = (
    Peer("pyorderbook", "pyorderbook", "pyorderbook", True),
    Peer("lightmatchingengine", "lightmatchingengine", "lightmatchingengine", True),
    Peer("fastlob", "fastlob", "fastlob", True),
    Peer("order-matching", "order-matching", "order_matching", True, "imports pandera and polars without "
         "declaring them", ("pandera", "polars")),
    Peer("ordrbook", "ordrbook", "ordrbook", True),
    Peer("limit-order-book", "limit-order-book", "limit_order_book", False, "C++ via ctypes"),
    Peer("liquibook", "liquibook", "liquibook", False, "C++ via SWIG, fills via a Python listener"),
    Peer("cython-orderbook", "cython-orderbook", "cython_orderbook", False, "Cython"),
    Peer("pylobo", "pylobo", "lobo", False, "Rust"),
    Peer("lumina-lob", "lumina-lob", "lumina_lob", False, "C++ engine (pybind11); installed --no-deps: "
         "its RL extras pull ~6 GB of torch", ("--no-deps",)),
    Peer("litebook", "litebook", "litebook", False, "Rust"),
    Peer("nanobook", "nanobook", "nanobook", False, "Rust"),
    Peer("matching-engine", "matching-engine", "matching_engine", True, "requires Python >= 3.12"),
)


class Adapter:
    """Base: a fresh engine per instance; `limit`/`cancel` are the generic (non-native) entry points."""

    record = False

    def __init__(self, record: bool = False) -> None:
        self.record = record
        self.trades = 0
        self.qty = 0
        self.notional = 0

    def prepare(self, ops: list[list[int]]) -> list[Call]:
        """The workload as prepared calls; engines with a plain native API override this."""
        limit, cancel = self.limit, self.cancel
        return [(limit, (op[1], op[2], op[3], op[4])) if op[0] == 0 else (cancel, (op[1],)) for op in ops]

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        raise NotImplementedError

    def cancel(self, oid: int) -> None:
        raise NotImplementedError

    def fill(self, price: Any, qty: Any) -> None:
        """Count one maker fill (recording passes only)."""
        self.trades += 1
        self.qty += int(qty)
        self.notional += round(float(price)) * int(qty)

    def top(self) -> tuple[int | None, int | None]:
        """Final best bid and best ask prices."""
        raise NotImplementedError

    def stats(self) -> dict[str, Any]:
        """What the cross-check compares: fills (None when the engine does not report them) and the top."""
        bid, ask = self.top()
        return {"trades": self.trades, "qty": self.qty, "notional": self.notional,
                "best_bid": None if bid is None else round(float(bid)),
                "best_ask": None if ask is None else round(float(ask))}

    def close(self) -> None:
        """Stop background threads, if the engine has any."""


def _price(x: Any) -> int | None:
    return None if x is None or x == 0 else round(float(x))


# -- ours and the baseline ---------------------------------------------------------------------------

class Ours(Adapter):
    """nodes.matching.book with every feature on: validation, events returned, STP, L2 deltas, checksum.

    The build is whatever `nodes.matching` selects in the runner's process: the compiled one as installed, or
    the pure source under QT_PURE_BOOK=1; `stats()` says which, so a row cannot silently run the other."""

    module = "nodes.matching.book"

    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        self.book = importlib.import_module(self.module).Book(1, 1, 1)

    def prepare(self, ops: list[list[int]]) -> list[Call]:
        # Two disjoint account pools, so the STP check runs on every fill but never fires (peers have no STP).
        buyers = [f"buyer-{i}" for i in range(64)]
        sellers = [f"seller-{i}" for i in range(64)]
        submit = self.recorded_submit if self.record else self.book.submit
        cancel = self.book.cancel
        return [(submit, (op[1], buyers[op[1] & 63], "BUY", "LIMIT", op[4], op[3])) if op[0] == 0 and op[2]
                else (submit, (op[1], sellers[op[1] & 63], "SELL", "LIMIT", op[4], op[3])) if op[0] == 0
                else (cancel, (op[1],)) for op in ops]

    def recorded_submit(self, *args: Any) -> None:
        for e in self.book.submit(*args):
            if e[0] == "fill":
                self.fill(e[6], e[7])
            elif e[0] == "rejected":
                raise RuntimeError(f"our book rejected {args}: {e}")

    def top(self) -> tuple[int | None, int | None]:
        bid, ask = self.book.best_bid(), self.book.best_ask()
        return (bid[0] if bid else None, ask[0] if ask else None)

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["checksum"] = self.book.checksum()
        out["build"] = importlib.import_module("nodes.matching").BOOK_BUILD.kind
        return out


class Bare(Adapter):
    """The floor: dict price -> [total, deque], sorted key lists (bids negated), dict id -> order, lazy cancel.

    No validation, no events, no STP, no checksum, no L2 deltas: what a book without features costs.
    """

    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        self.levels: dict[int, list[Any]] = {}
        self.bids: list[int] = []
        self.asks: list[int] = []
        self.orders: dict[int, list[int]] = {}

    def prepare(self, ops: list[list[int]]) -> list[Call]:
        limit, cancel = self.limit, self.cancel
        return [(limit, (op[1], op[2], op[3], op[4])) if op[0] == 0 else (cancel, (op[1],)) for op in ops]

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        levels, orders = self.levels, self.orders
        keys, lim = (self.asks, price) if buy else (self.bids, -price)
        while keys and keys[0] <= lim:
            k = keys[0]
            lvl = levels[k]
            q = lvl[1]
            while qty:
                o = q[0]
                r = o[0]
                if not r:
                    q.popleft()
                    continue
                f = qty if qty < r else r
                o[0] = r - f
                lvl[0] -= f
                qty -= f
                if self.record:
                    self.fill(abs(k), f)
                if r == f:
                    q.popleft()
                    del orders[o[1]]
                    if not lvl[0]:
                        break
            if not lvl[0]:
                del levels[k]
                del keys[0]
            if not qty:
                return
        k = -lim
        o = [qty, oid, k]
        lvl = levels.get(k)
        if lvl is None:
            levels[k] = [qty, deque((o,))]
            insort(self.bids if buy else self.asks, k)
        else:
            lvl[0] += qty
            lvl[1].append(o)
        orders[oid] = o

    def cancel(self, oid: int) -> None:
        o = self.orders.pop(oid)
        k = o[2]
        lvl = self.levels[k]
        lvl[0] -= o[0]
        o[0] = 0
        if not lvl[0]:
            del self.levels[k]
            keys = self.bids if k < 0 else self.asks
            del keys[bisect_left(keys, k)]

    def top(self) -> tuple[int | None, int | None]:
        return (-self.bids[0] if self.bids else None, self.asks[0] if self.asks else None)


# -- pure-Python peers -----------------------------------------------------------------------------

class PyOrderBook(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        import logging

        import pyorderbook

        logging.getLogger("pyorderbook.book").setLevel(logging.WARNING)
        self.mod = pyorderbook
        self.book = pyorderbook.Book()
        self.ids: dict[int, Any] = {}

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        order = (self.mod.bid if buy else self.mod.ask)("X", price, qty)
        blotter = self.book.match(order)
        if order.quantity:
            self.ids[oid] = order
        if self.record:
            for t in blotter.trades:
                self.fill(t.fill_price, t.fill_quantity)

    def cancel(self, oid: int) -> None:
        self.book.cancel(self.ids.pop(oid))

    def top(self) -> tuple[int | None, int | None]:
        live = {side: [p for p, lvl in self.book.level_map["X"][side].items() if lvl.orders]
                for side in (self.mod.Side.BID, self.mod.Side.ASK)}
        bids, asks = live[self.mod.Side.BID], live[self.mod.Side.ASK]
        return (_price(max(bids)) if bids else None, _price(min(asks)) if asks else None)


class LightMatchingEngine(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        from lightmatchingengine.lightmatchingengine import LightMatchingEngine as Engine
        from lightmatchingengine.lightmatchingengine import Side

        self.engine = Engine()
        self.buy, self.sell = Side.BUY, Side.SELL
        self.ids: dict[int, int] = {}

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        order, trades = self.engine.add_order("X", price, qty, self.buy if buy else self.sell)
        if order.leaves_qty:
            self.ids[oid] = order.order_id
        if self.record:
            for t in trades:
                if t.order_id != order.order_id:  # its passive (maker) executions
                    self.fill(t.trade_price, t.trade_qty)

    def cancel(self, oid: int) -> None:
        self.engine.cancel_order(self.ids.pop(oid), "X")

    def top(self) -> tuple[int | None, int | None]:
        book = self.engine.order_books.get("X")
        if book is None:
            return None, None
        return (max(book.bids) if book.bids else None, min(book.asks) if book.asks else None)


class FastLob(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        import logging

        import fastlob

        logging.disable(logging.WARNING)  # it logs a line per order at INFO and warns on empty sides
        self.mod = fastlob
        self.lob = fastlob.Orderbook("bench", start=True)
        self.ids: dict[int, str] = {}
        self.trades = None  # type: ignore[assignment]  # it counts whole-order matches only: not comparable

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        side = self.mod.OrderSide.BID if buy else self.mod.OrderSide.ASK
        result = self.lob.process(self.mod.OrderParams(side, price, qty))
        self.ids[oid] = result.orderid()
        prices = result._execprices  # None for a limit order that did not cross
        if self.record and prices:
            for p, q in prices.items():
                self.qty += int(q)
                self.notional += int(p * q)

    def cancel(self, oid: int) -> None:
        self.lob.cancel(self.ids.pop(oid))

    def top(self) -> tuple[int | None, int | None]:
        bid, ask = self.lob.best_bid(), self.lob.best_ask()
        return (_price(bid[0]) if bid else None, _price(ask[0]) if ask else None)

    def close(self) -> None:
        self.lob.stop()


class OrderMatching(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        from datetime import datetime, timedelta

        from loguru import logger
        from order_matching.enums import Side
        from order_matching.matching_engine import MatchingEngine
        from order_matching.order import LimitOrder
        from order_matching.orders import Orders

        logger.remove()  # it logs every placement at DEBUG through loguru's default stderr sink
        self.engine = MatchingEngine(seed=1)
        self.side = (Side.SELL, Side.BUY)
        self.order, self.orders = LimitOrder, Orders
        self.t0, self.step = datetime(2024, 1, 1), timedelta(microseconds=1)
        self.n = 0

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        self.n += 1
        ts = self.t0 + self.step * self.n
        self.engine.place(self.orders([self.order(side=self.side[buy], price=price, size=qty, timestamp=ts,
                                                  order_id=str(oid), trader_id="b" if buy else "s")]))
        trades = self.engine.match(timestamp=ts)
        if self.record:
            for t in trades.trades:
                self.fill(t.price, t.size)

    def cancel(self, oid: int) -> None:
        self.engine.cancel_order(str(oid))

    def top(self) -> tuple[int | None, int | None]:
        book = self.engine.unprocessed_orders  # price -> Orders; emptied prices may linger
        bids = [p for p, orders in book.bids.items() if not orders.is_empty]
        asks = [p for p, orders in book.offers.items() if not orders.is_empty]
        return (_price(max(bids)) if bids else None, _price(min(asks)) if asks else None)


class Ordrbook(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        from ordrbook import OrderBook

        self.book = OrderBook(tick_size=1)
        self.side: dict[int, int] = {}
        self.missing = 0

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        quote = {"order_id": oid, "trade_id": oid, "timestamp": 0, "quantity": qty, "price": price}
        trades, resting = (self.book.bid_limit_order if buy else self.book.ask_limit_order)(quote)
        if resting is not None:
            self.side[oid] = buy
        if self.record:
            for t in trades:
                self.fill(t["price"], t["quantity"])

    def cancel(self, oid: int) -> None:
        try:
            (self.book.bids if self.side.pop(oid) else self.book.asks).remove_order_by_id(oid)
        except KeyError:  # its matching already took (or never rested) an order ours has resting
            self.missing += 1

    def stats(self) -> dict[str, Any]:
        out = super().stats()
        out["missing_cancels"] = self.missing
        return out

    def top(self) -> tuple[int | None, int | None]:
        return _price(self.book.bids.max_price()), _price(self.book.asks.min_price())


# -- compiled peers --------------------------------------------------------------------------------

class LimitOrderBook(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        from limit_order_book import LimitOrderBook as Lob

        self.lob = Lob()
        self.trades = self.qty = self.notional = None  # type: ignore[assignment]  # no fill reports

    def prepare(self, ops: list[list[int]]) -> list[Call]:
        limit, cancel = self.lob.limit, self.lob.cancel
        return [(limit, (bool(op[2]), op[1], op[4], op[3])) if op[0] == 0 else (cancel, (op[1],)) for op in ops]

    def top(self) -> tuple[int | None, int | None]:
        return _price(self.lob.best_buy()), _price(self.lob.best_sell())


class Liquibook(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        import liquibook

        adapter = self

        class Listener(liquibook.OrderListener):  # type: ignore[misc,name-defined]
            def on_accept(self, order: Any) -> None: ...
            def on_cancel(self, order: Any) -> None: ...

            def on_fill(self, passive: Any, aggressive: Any, qty: int, price: int) -> None:
                passive.fill(qty, price, 0)  # liquibook's SimpleOrder tracks its open qty only through this
                aggressive.fill(qty, price, 0)
                adapter.trades += 1
                adapter.qty += qty
                adapter.notional += qty * price

        self.mod = liquibook
        self.listener = Listener()
        self.book = liquibook.DepthOrderBook()
        self.book.set_order_listener(self.listener)
        self.ids: dict[int, Any] = {}

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        order = self.mod.SimpleOrder(bool(buy), price, qty)
        self.book.add(order)
        if order.open_qty():
            self.ids[oid] = order

    def cancel(self, oid: int) -> None:
        self.book.cancel(self.ids.pop(oid))

    def top(self) -> tuple[int | None, int | None]:
        depth = self.book.depth()
        return _price(depth.get_bid_levels()[0].price()), _price(depth.get_ask_levels()[0].price())


class CythonOrderBook(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        from cython_orderbook import Order, OrderBook, OrderSide

        self.book = OrderBook()
        self.order, self.sides = Order, (OrderSide.ASK, OrderSide.BID)
        self.ids: dict[int, str] = {}

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        order = self.order(self.sides[buy], qty, price)
        self.book.add_limit_order(order)
        if order.remaining_quantity:
            self.ids[oid] = order.order_id

    def cancel(self, oid: int) -> None:
        self.book.cancel_order(self.ids.pop(oid))

    def stats(self) -> dict[str, Any]:
        for t in self.book.trade_log:
            self.fill(t.price, t.quantity_filled)
        return super().stats()

    def top(self) -> tuple[int | None, int | None]:
        return _price(self.book.best_bid()), _price(self.book.best_ask())


class Pylobo(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        import lobo
        from lobo.orders import LimitOrder, Side

        self.book = lobo.Book(check_sum_spec=lobo.CheckSum.Null)
        self.reports = lobo.Reports(include_fills=True) if record else None
        self.order, self.sides = LimitOrder, (Side.Sell, Side.Buy)
        self.traders = (uuid.uuid4(), uuid.uuid4())
        self.ids: dict[int, Any] = {}

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        result = self.book.fill(self.order(price, qty, self.traders[buy], self.sides[buy]), self.reports)
        if result.remaining_order_id is not None:
            self.ids[oid] = result.remaining_order_id
        if self.record and result.report is not None and result.report.fills:
            for f in result.report.fills:
                self.fill(f.price, f.fill_quantity)

    def cancel(self, oid: int) -> None:
        self.book.cancel(self.ids.pop(oid))

    def top(self) -> tuple[int | None, int | None]:
        return _price(self.book.best_bid), _price(self.book.best_ask)


class LuminaLob(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        from lumina_lob import _core

        self.core = _core
        self.book = _core.OrderBook()
        self.engine = _core.MatchingEngine(self.book)
        self.prices: dict[int, int] = {}

    def prepare(self, ops: list[list[int]]) -> list[Call]:
        c = self.core
        process, cancel = self.engine.process, self.book.cancel
        sides, limit = (c.Side.ASK, c.Side.BID), c.OrderType.LIMIT
        self.prices = {op[1]: op[3] for op in ops if op[0] == 0}
        return [(process, (op[1], sides[op[2]], op[3], op[4], limit)) if op[0] == 0 else (cancel, (op[1],))
                for op in ops]

    def stats(self) -> dict[str, Any]:
        for buy_id, sell_id, qty in self.book.trades():  # no price: the maker is the older (smaller) id
            self.fill(self.prices[min(buy_id, sell_id)], qty)
        return super().stats()

    def top(self) -> tuple[int | None, int | None]:
        return _price(self.book.best_bid()), _price(self.book.best_ask())


class Litebook(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        import litebook

        self.book = litebook.OrderBook(tick_size=1.0)
        self.sides = (litebook.OrderType.Sell, litebook.OrderType.Buy)
        self.ids: dict[int, str] = {}

    def limit(self, oid: int, buy: int, price: int, qty: int) -> None:
        order = self.book.create_order(self.sides[buy], float(price), float(qty))
        fills = self.book.add(order)
        if order.is_open():
            self.ids[oid] = order.id
        if self.record:
            for f in fills:
                self.fill(f.price, f.quantity)

    def cancel(self, oid: int) -> None:
        self.book.cancel(self.ids.pop(oid))

    def top(self) -> tuple[int | None, int | None]:
        bids = [o.price_in_ticks for o in self.book.buy_orders if o.is_open()]
        asks = [o.price_in_ticks for o in self.book.sell_orders if o.is_open()]
        return (max(bids) if bids else None, min(asks) if asks else None)


class Nanobook(Adapter):
    def __init__(self, record: bool = False) -> None:
        super().__init__(record)
        import nanobook

        self.ex = nanobook.Exchange()
        self.ids: dict[int, int] = {}

    def prepare(self, ops: list[list[int]]) -> list[Call]:
        submit, cancel = self.submit, self.cancel
        return [(submit, (op[1], "buy" if op[2] else "sell", op[3], op[4])) if op[0] == 0 else (cancel, (op[1],))
                for op in ops]

    def submit(self, oid: int, side: str, price: int, qty: int) -> None:
        self.ids[oid] = self.ex.submit_limit(side, price, qty, "gtc").order_id

    def cancel(self, oid: int) -> None:
        self.ex.cancel(self.ids.pop(oid))

    def stats(self) -> dict[str, Any]:
        for t in self.ex.trades():
            self.fill(t.price, t.quantity)
        return super().stats()

    def top(self) -> tuple[int | None, int | None]:
        bid, ask = self.ex.best_bid_ask()
        return _price(bid), _price(ask)


ADAPTERS: dict[str, type[Adapter]] = {
    "ours": Ours,
    "ours-python": Ours,  # run with QT_PURE_BOOK=1: the same source as plain Python
    "bare": Bare,
    "pyorderbook": PyOrderBook,
    "lightmatchingengine": LightMatchingEngine,
    "fastlob": FastLob,
    "order-matching": OrderMatching,
    "ordrbook": Ordrbook,
    "limit-order-book": LimitOrderBook,
    "liquibook": Liquibook,
    "cython-orderbook": CythonOrderBook,
    "pylobo": Pylobo,
    "lumina-lob": LuminaLob,
    "litebook": Litebook,
    "nanobook": Nanobook,
}
