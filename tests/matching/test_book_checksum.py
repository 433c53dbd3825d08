"""The book checksum: CRC32 of the top 10 levels, Kraken v2 style, computed by hand here."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from nodes.matching.book import Book


def crc32_bitwise(data: bytes) -> int:
    """CRC-32 (IEEE 802.3, reflected, polynomial 0xEDB88320) one bit at a time: independent of zlib."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0xEDB88320 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def test_checksum_of_a_small_book_matches_the_hand_computed_crc32(book_cls: type[Book]) -> None:
    book = book_cls()
    book.submit("a1", "x", "SELL", "LIMIT", 150000000, 6750100)  # 1.5 BTC @ 67,501.00
    book.submit("a2", "x", "SELL", "LIMIT", 50000000, 6750100)
    book.submit("a3", "x", "SELL", "LIMIT", 1000, 6750200)
    book.submit("b1", "y", "BUY", "LIMIT", 25000000, 6749900)
    # asks ascending then bids descending, str(price) + str(level qty) each, then crc32 of the ASCII
    text = "6750100" "200000000" + "6750200" "1000" + "6749900" "25000000"
    assert text == "675010020000000067502001000674990025000000"
    assert crc32_bitwise(text.encode("ascii")) == 0xE31F1C64
    assert book.checksum() == 0xE31F1C64


def test_checksum_covers_only_the_top_ten_levels_per_side(book_cls: type[Book]) -> None:
    book = book_cls()
    for i in range(12):
        book.submit(f"b{i}", "y", "BUY", "LIMIT", 1, 100 - i)
    top = book.checksum()
    book.submit("deep", "y", "BUY", "LIMIT", 5, 80)  # the 13th level: not part of the checksum
    assert book.checksum() == top
    book.submit("top", "y", "BUY", "LIMIT", 5, 100)
    assert book.checksum() != top


def test_checksum_matches_an_independent_crc_on_a_restored_book(book_cls: type[Book]) -> None:
    book = book_cls(tick=5, lot=10, min_qty=10)
    book.submit("a", "x", "SELL", "LIMIT", 30, 105)
    book.submit("b", "y", "BUY", "LIMIT", 20, 95)
    restored = book_cls.restore(book.snapshot())
    assert restored.checksum() == book.checksum() == crc32_bitwise(b"1053095" b"20")


def test_empty_book_checksum_is_crc32_of_nothing(book_cls: type[Book]) -> None:
    assert book_cls().checksum() == zlib.crc32(b"") == 0
