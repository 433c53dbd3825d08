"""The live `md.*` subjects: JSON with decimal strings, and a `seq`/`prev_seq` chain per subject."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from nats.aio.msg import Msg

from contracts.subjects import candles_feed_subject, ticker_feed_subject, trades_feed_subject
from mesh.rpc import subscribed
from tests.market_data.market import Market, minute_ago_ns, publish, wait_seq

SECOND_NS = 1_000_000_000


class Listener:
    """Collects the JSON messages of some subjects."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = {}
        self.changed = asyncio.Event()

    async def on_msg(self, msg: Msg) -> None:
        """Subscription callback (nats.py wants a coroutine function)."""
        self.got.setdefault(msg.subject, []).append(json.loads(msg.data))
        self.changed.set()

    async def wait(self, subject: str, n: int, timeout_s: float = 20.0) -> list[dict[str, Any]]:
        """The first `n` messages of `subject`, once they have come."""
        async with asyncio.timeout(timeout_s):
            while len(self.got.get(subject, [])) < n:
                self.changed.clear()
                await self.changed.wait()
        return self.got[subject][:n]


def chain(messages: list[dict[str, Any]]) -> list[tuple[int, int]]:
    """(prev_seq, seq) of each message."""
    return [(m["prev_seq"], m["seq"]) for m in messages]


async def test_trades_candles_and_ticker_stream_with_a_gapless_seq_chain(market: Market) -> None:
    await market.start()
    listener = Listener()
    subjects = [trades_feed_subject("BTC-USD"), ticker_feed_subject("BTC-USD"),
                *(candles_feed_subject("BTC-USD", tf) for tf in ("1m", "5m", "1h"))]
    subs = [await market.nc.subscribe(s, cb=listener.on_msg) for s in subjects]
    await subscribed(market.nc)
    t0 = minute_ago_ns()
    a = await publish(market.js, "trade", "BTC-USD-1", "BTC-USD", 6750000, 100000, t0 + SECOND_NS)
    await publish(market.js, "trade", "ETH-USD-1", "ETH-USD", 345000, 10000, t0 + SECOND_NS)  # another instrument
    b = await publish(market.js, "trade", "BTC-USD-2", "BTC-USD", 6760000, 200000, t0 + 2 * SECOND_NS, side="SELL")
    c = await publish(market.js, "bust", "BTC-USD-1", "BTC-USD", 6750000, 100000, t0 + 3 * SECOND_NS)
    expected = [(0, a.seq), (a.seq, b.seq), (b.seq, c.seq)]

    trades = await listener.wait(trades_feed_subject("BTC-USD"), 3)
    assert chain(trades) == expected
    assert [(m["kind"], m["trade_id"]) for m in trades] == [("trade", "BTC-USD-1"), ("trade", "BTC-USD-2"),
                                                            ("bust", "BTC-USD-1")]
    assert trades[1] == {"seq": b.seq, "prev_seq": a.seq, "instrument": "BTC-USD", "kind": "trade",
                         "trade_id": "BTC-USD-2", "price": "67600.00", "qty": "0.00200000", "quote": "135.20",
                         "taker_side": "SELL", "ts": (t0 + 2 * SECOND_NS) // 1_000_000}

    for tf in ("1m", "5m", "1h"):
        candles = await listener.wait(candles_feed_subject("BTC-USD", tf), 3)
        assert chain(candles) == expected, tf
        assert [(m["tf"], m["trades"], m["open"], m["volume"]) for m in candles] == [
            (tf, 1, "67500.00", "0.00100000"), (tf, 2, "67500.00", "0.00300000"), (tf, 1, "67600.00", "0.00200000")]

    tickers = await listener.wait(ticker_feed_subject("BTC-USD"), 3)
    assert chain(tickers) == expected
    assert [(m["last"], m["trades"], m["quote_volume"]) for m in tickers] == [
        ("67500.00", 1, "67.50"), ("67600.00", 2, "202.70"), ("67600.00", 1, "135.20")]
    assert (await wait_seq(market.nc, "BTC-USD", c.seq))["seq"] == tickers[-1]["seq"]
    for sub in subs:
        await sub.unsubscribe()


async def test_a_bust_that_empties_a_candle_sends_it_without_prices(market: Market) -> None:
    await market.start()
    listener = Listener()
    sub = await market.nc.subscribe(candles_feed_subject("MSFT", "1m"), cb=listener.on_msg)
    await subscribed(market.nc)
    t0 = minute_ago_ns()
    await publish(market.js, "trade", "MSFT-1", "MSFT", 41218, 10000, t0)
    bust = await publish(market.js, "bust", "MSFT-1", "MSFT", 41218, 10000, t0 + SECOND_NS)
    emptied = (await listener.wait(candles_feed_subject("MSFT", "1m"), 2))[1]
    assert emptied == {"seq": bust.seq, "prev_seq": bust.seq - 1, "instrument": "MSFT", "tf": "1m",
                       "start": t0 // 1_000_000, "open": None, "high": None, "low": None, "close": None,
                       "volume": "0.0000", "quote_volume": "0.00", "trades": 0}
    await sub.unsubscribe()
