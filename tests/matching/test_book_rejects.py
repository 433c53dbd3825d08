"""Bad input at the book level: a precise reason, and nothing changes (depth, checksum, count, trade ids)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from nodes.matching.book import Book


@pytest.fixture
def book(book_cls: type[Book]) -> Book:
    """A book with tick 5, lot 10, minimum 20 and one order per side."""
    book = book_cls(tick=5, lot=10, min_qty=20)
    book.submit("bid", "alice", "BUY", "LIMIT", 20, 95)
    book.submit("ask", "bob", "SELL", "LIMIT", 30, 105)
    book.drain_deltas()
    return book


def unchanged(book: Book, call: Any) -> list[tuple]:
    before = (book.depth(), book.checksum(), len(book), book.trade_id, book.snapshot())
    events = call()
    assert (book.depth(), book.checksum(), len(book), book.trade_id, book.snapshot()) == before
    assert book.drain_deltas() == []
    return events


@pytest.mark.parametrize(("kwargs", "reason"), [
    ({"price": 97}, "price_off_tick"),
    ({"qty": 25}, "qty_off_step"),
    ({"qty": 10}, "qty_below_min"),
    ({"qty": 0}, "invalid_qty"),
    ({"qty": -20}, "invalid_qty"),
    ({"qty": 20.0}, "invalid_qty"),
    ({"price": 0}, "invalid_price"),
    ({"price": -5}, "invalid_price"),
    ({"price": None}, "invalid_price"),
    ({"order_type": "MARKET", "price": 100}, "market_with_price"),
    ({"post_only": True, "price": 105}, "post_only_would_take"),
    ({"post_only": True, "tif": "IOC"}, "post_only_not_gtc"),
    ({"order_id": "bid"}, "duplicate_order_id"),
    ({"side": "buy"}, "invalid_side"),
    ({"order_type": "STOP"}, "invalid_order_type"),
    ({"tif": "DAY"}, "invalid_tif"),
    ({"stp": "none"}, "invalid_stp"),
    ({"max_quote": 1000}, "max_quote_not_allowed"),
    ({"order_type": "MARKET", "price": None, "side": "SELL", "max_quote": 1000}, "max_quote_not_allowed"),
    ({"order_type": "MARKET", "price": None, "max_quote": 0}, "invalid_max_quote"),
])
def test_bad_submit_is_rejected_with_its_reason_and_changes_nothing(book: Book, kwargs: dict[str, Any],
                                                                     reason: str) -> None:
    order = {"order_id": "new", "account": "carol", "side": "BUY", "order_type": "LIMIT", "qty": 20, "price": 100}
    order.update(kwargs)
    events = unchanged(book, lambda: book.submit(**order))
    assert events == [("rejected", order["order_id"], reason)]


def test_cancel_of_unknown_id_is_rejected(book: Book) -> None:
    assert unchanged(book, lambda: book.cancel("nope")) == [("rejected", "nope", "unknown_order")]


def test_cancel_by_another_account_is_rejected(book: Book) -> None:
    assert unchanged(book, lambda: book.cancel("bid", "mallory")) == [("rejected", "bid", "not_owner")]


def test_cancel_twice_is_rejected_the_second_time(book: Book) -> None:
    assert book.cancel("bid", "alice") == [("cancelled", "bid", "alice", 20, "user")]
    assert book.drain_deltas() == [("BUY", 95, 0)]
    assert unchanged(book, lambda: book.cancel("bid")) == [("rejected", "bid", "unknown_order")]


@pytest.mark.parametrize(("order_id", "price", "qty", "reason"), [
    ("nope", 100, 20, "unknown_order"),
    ("bid", 97, 20, "price_off_tick"),
    ("bid", 0, 20, "invalid_price"),
    ("bid", 100, 15, "qty_off_step"),
    ("bid", 100, 10, "qty_below_min"),
    ("bid", 100, 0, "invalid_qty"),
])
def test_bad_replace_is_rejected_and_changes_nothing(book: Book, order_id: str, price: int, qty: int,
                                                     reason: str) -> None:
    assert unchanged(book, lambda: book.replace(order_id, price, qty)) == [("rejected", order_id, reason)]


def test_post_only_replace_that_would_take_is_rejected(book: Book) -> None:
    book.submit("maker", "carol", "BUY", "LIMIT", 20, 90, post_only=True)
    book.drain_deltas()
    assert unchanged(book, lambda: book.replace("maker", 105, 20)) == [("rejected", "maker", "post_only_would_take")]


def test_failed_fok_changes_nothing(book: Book) -> None:
    events = unchanged(book, lambda: book.submit("f", "carol", "BUY", "LIMIT", 40, 105, "FOK"))
    assert events == [("accepted", "f"), ("cancelled", "f", "carol", 40, "fok")]
