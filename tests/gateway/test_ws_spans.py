"""A book channel's catch-up frames, on the pure channel (no sockets): a connection tens of updates behind
gets one small `update` spanning them, further behind one snapshot; each frame is encoded once."""

from __future__ import annotations

import json
import random

from contracts.instruments import instrument
from contracts.money import format_amount
from gateway.l2 import L2Mirror
from gateway.ws_hub import CATCH_UP, Channel, LevelTexts
from tests.gateway.test_ws import BookClient
from tooling.bench.gateway_ws import checksum

SYMBOL = "MSFT"
SPEC = instrument(SYMBOL)
#: A lag at 1,000 updates/s and 500 connections: more than the 8 updates a channel used to keep.
BEHIND = 40


class Feed:
    """`md.book` messages of one level change each, as the engine publishes them (absolute totals, checksum)."""

    def __init__(self, levels: int = 40) -> None:
        self.rng = random.Random(7)
        self.bids = {SPEC.reference_price - k * SPEC.tick: 10 * SPEC.min_qty for k in range(1, levels + 1)}
        self.asks = {SPEC.reference_price + k * SPEC.tick: 10 * SPEC.min_qty for k in range(1, levels + 1)}
        self.seq = 100

    def channel(self) -> Channel:
        channel = Channel(f"book.{SYMBOL}", f"md.book.{SYMBOL}", mirror=L2Mirror(), texts=LevelTexts(SYMBOL))
        assert channel.mirror is not None
        channel.mirror.load(self.seq, list(self.bids.items()), list(self.asks.items()))
        channel.reset(self.seq)
        return channel

    def next(self) -> dict[str, object]:
        buy = self.rng.random() < 0.5
        price = SPEC.reference_price + (-1 if buy else 1) * self.rng.randint(1, 60) * SPEC.tick
        qty = self.rng.randint(0, 20) * SPEC.min_qty
        side = self.bids if buy else self.asks
        if qty:
            side[price] = qty
        else:
            side.pop(price, None)
        prev, self.seq = self.seq, self.seq + 1
        return {"seq": self.seq, "prev_seq": prev, "checksum": checksum(self.bids, self.asks),
                "deltas": [("BUY" if buy else "SELL", price, qty)]}


def publish(channel: Channel, feed: Feed, count: int) -> None:
    assert channel.mirror is not None
    for _ in range(count):
        applied = channel.mirror.apply(feed.next())
        assert applied.kind == "update"
        channel.publish(applied)


def test_a_connection_tens_of_updates_behind_gets_one_update_spanning_them() -> None:
    feed = Feed()
    channel = feed.channel()
    lagging = BookClient()
    lagging.on(json.loads(channel.frames_after(None)[0]))
    publish(channel, feed, BEHIND)
    (text,) = channel.frames_after(lagging.seq)
    frame = json.loads(text)
    assert frame["type"] == "update" and frame["seq"] == feed.seq
    assert len(frame["bids"]) + len(frame["asks"]) <= BEHIND  # only the levels that changed, not the book
    lagging.on(frame)  # continues from its seq and checks the checksum
    fresh = BookClient()
    fresh.on(json.loads(channel.snapshot()))
    assert lagging.sorted_levels() == fresh.sorted_levels()
    assert channel.frames_after(100) == [text] and channel.frames_after(100)[0] is text, "encoded once per seq"


def test_a_connection_further_behind_than_the_channel_keeps_gets_one_snapshot() -> None:
    feed = Feed()
    channel = feed.channel()
    publish(channel, feed, CATCH_UP + 1)
    (text,) = channel.frames_after(100)
    frame = json.loads(text)
    assert frame["type"] == "snapshot" and frame["seq"] == feed.seq
    assert channel.frames_after(100)[0] is text, "a snapshot is encoded once per seq"
    book = BookClient()
    book.on(frame)  # the checksum proves the top levels
    assert (len(book.bids), len(book.asks)) == (len(feed.bids), len(feed.asks))


def test_levels_are_the_contracts_decimal_strings() -> None:
    texts = LevelTexts(SYMBOL)
    price, qty = SPEC.reference_price + 3 * SPEC.tick, 7 * SPEC.min_qty
    expected = [[format_amount(SPEC.quote, price), format_amount(SPEC.base, qty)]]
    assert texts.levels([(price, qty)]) == expected
    assert texts.levels([(price, qty)]) == expected  # the second time from the cache
