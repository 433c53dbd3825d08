"""Regressions from the seed's flaws: each a short scenario with bounded output, so a loop fails, not hangs."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodes.matching.book import Book


def fills(events: list[tuple]) -> list[tuple]:
    return [e for e in events if e[0] == "fill"]


def test_fully_filled_maker_leaves_and_the_level_keeps_serving(book_cls: type[Book]) -> None:
    # The seed removed a fully filled maker from the wrong side, then looped on zero-quantity fills.
    book = book_cls()
    book.submit("m1", "maker", "SELL", "LIMIT", 5, 100)
    book.submit("m2", "maker", "SELL", "LIMIT", 5, 100)
    first = book.submit("t1", "taker", "BUY", "LIMIT", 5, 100, "IOC")
    assert len(first) < 10
    assert fills(first) == [("fill", 1, "t1", "taker", "m1", "maker", 100, 5, 0, "BUY", 0)]
    assert book.order("m1") is None
    second = book.submit("t2", "taker", "BUY", "LIMIT", 7, 100, "IOC")
    assert len(second) < 10
    assert fills(second) == [("fill", 2, "t2", "taker", "m2", "maker", 100, 5, 0, "BUY", 2)]
    assert second[-1] == ("cancelled", "t2", "taker", 2, "ioc")
    assert book.depth() == ([], []) and len(book) == 0
    third = book.submit("t3", "taker", "BUY", "LIMIT", 3, 100)
    assert third == [("accepted", "t3")] and book.best_bid() == (100, 3)


def test_no_fill_is_ever_zero_and_maker_order_is_time_priority(book_cls: type[Book]) -> None:
    # The seed smoke: an IOC BUY 5 @ 100.00 against two resting SELLs of 5 fills once, against the first.
    book = book_cls()
    for i in range(2):
        book.submit(f"s{i}", "seller", "SELL", "LIMIT", 5, 10000)
    events = book.submit("b", "buyer", "BUY", "LIMIT", 5, 10000, "IOC")
    assert fills(events) == [("fill", 1, "b", "buyer", "s0", "seller", 10000, 5, 0, "BUY", 0)]
    assert book.order("s1") is not None and book.order("s1").remaining == 5


def test_sweep_through_levels_trades_at_each_makers_price(book_cls: type[Book]) -> None:
    book = book_cls()
    for i, price in enumerate((101, 102, 103)):
        book.submit(f"s{i}", "seller", "SELL", "LIMIT", 2, price)
    events = book.submit("b", "buyer", "BUY", "LIMIT", 10, 102)
    assert [(e[6], e[7]) for e in fills(events)] == [(101, 2), (102, 2)]
    assert book.best_bid() == (102, 6) and book.best_ask() == (103, 2)


def test_market_order_never_rests(book_cls: type[Book]) -> None:
    # The seed left MARKET GTC orders open.
    book = book_cls()
    book.submit("s", "seller", "SELL", "LIMIT", 3, 100)
    events = book.submit("m", "buyer", "BUY", "MARKET", 5)
    assert events[-1] == ("cancelled", "m", "buyer", 2, "market")
    assert book.order("m") is None and book.depth() == ([], [])
    assert book.submit("m2", "buyer", "BUY", "MARKET", 5)[-1] == ("cancelled", "m2", "buyer", 5, "market")


def test_market_buy_stops_before_max_quote(book_cls: type[Book]) -> None:
    book = book_cls()
    book.submit("s1", "seller", "SELL", "LIMIT", 3, 100)
    book.submit("s2", "seller", "SELL", "LIMIT", 3, 110)
    events = book.submit("m", "buyer", "BUY", "MARKET", 6, max_quote=520)  # 300 + 2 * 110 = 520
    assert [(e[6], e[7]) for e in fills(events)] == [(100, 3), (110, 2)]
    assert events[-1] == ("cancelled", "m", "buyer", 1, "max_quote")
    assert book.best_ask() == (110, 1)


def test_fok_is_all_or_nothing(book_cls: type[Book]) -> None:
    # The seed kept FOK partial fills.
    book = book_cls()
    book.submit("s", "seller", "SELL", "LIMIT", 3, 100)
    before = book.snapshot()
    assert book.submit("f", "buyer", "BUY", "LIMIT", 5, 100, "FOK") == [
        ("accepted", "f"), ("cancelled", "f", "buyer", 5, "fok")]
    assert book.snapshot() == before and book.trade_id == 0
    assert len(fills(book.submit("g", "buyer", "BUY", "LIMIT", 3, 100, "FOK"))) == 1


def test_self_trade_modes(book_cls: type[Book]) -> None:
    def setup() -> Book:
        book = book_cls()
        book.submit("own", "me", "SELL", "LIMIT", 4, 100)
        book.submit("other", "you", "SELL", "LIMIT", 4, 100)
        return book

    book = setup()  # dc: the smaller (resting 4) is cancelled, the taker (6) decreased by 4
    assert book.submit("t", "me", "BUY", "LIMIT", 6, 100, stp="dc")[1:] == [
        ("cancelled", "own", "me", 4, "stp"), ("decreased", "t", "me", 4, 2, "stp"),
        ("fill", 1, "t", "me", "other", "you", 100, 2, 2, "BUY", 0)]
    book = setup()  # co: cancel the resting order, keep matching
    assert [e[0] for e in book.submit("t", "me", "BUY", "LIMIT", 6, 100, stp="co")[1:]] == ["cancelled", "fill"]
    assert book.order("t").remaining == 2
    book = setup()  # cn: cancel the taker, the resting order stays
    assert book.submit("t", "me", "BUY", "LIMIT", 6, 100, stp="cn")[1:] == [("cancelled", "t", "me", 6, "stp")]
    assert book.order("own").remaining == 4
    book = setup()  # cb: both go
    assert book.submit("t", "me", "BUY", "LIMIT", 6, 100, stp="cb")[1:] == [
        ("cancelled", "own", "me", 4, "stp"), ("cancelled", "t", "me", 6, "stp")]


def test_replace_keeps_priority_only_when_shrinking_at_the_same_price(book_cls: type[Book]) -> None:
    book = book_cls()
    book.submit("a", "x", "BUY", "LIMIT", 5, 100)
    book.submit("b", "y", "BUY", "LIMIT", 5, 100)
    assert book.replace("a", 100, 3) == [("replaced", "a", "x", 100, 3, True)]
    assert book.submit("s", "z", "SELL", "LIMIT", 1, 100, "IOC")[1][4] == "a"
    assert book.replace("a", 100, 4)[0][-1] is False  # growing: to the back of the level
    assert book.submit("s2", "z", "SELL", "LIMIT", 1, 100, "IOC")[1][4] == "b"


def test_crossing_replace_trades_as_taker_at_the_makers_price(book_cls: type[Book]) -> None:
    book = book_cls()
    book.submit("ask", "x", "SELL", "LIMIT", 2, 105)
    book.submit("bid", "y", "BUY", "LIMIT", 5, 100)
    events = book.replace("bid", 106, 5)
    assert events == [("replaced", "bid", "y", 106, 5, False),
                      ("fill", 1, "bid", "y", "ask", "x", 105, 2, 0, "BUY", 3)]
    assert book.best_bid() == (106, 3) and book.best_ask() is None
