"""The `marketdata.*` endpoints over a real node: decimal strings in JSON, busts and duplicates, bad input."""

from __future__ import annotations

import json
from typing import Any

import pytest

from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.subjects import MARKETDATA_ENDPOINTS
from tests.market_data.market import Market, md, minute_ago_ns, publish, wait_seq

SECOND_NS = 1_000_000_000


async def test_the_service_lists_its_endpoints_under_marketdata(market: Market) -> None:
    await market.start()
    info = json.loads((await market.nc.request("$SRV.INFO.marketdata", b"", timeout=5)).data)
    assert {e["subject"] for e in info["endpoints"]} == {f"marketdata.{name}" for name in MARKETDATA_ENDPOINTS}


async def three_aapl_trades(market: Market) -> tuple[int, int]:
    """190.50 x1, 191.00 x2 (SELL), 190.75 x0.5 in one minute; returns (that minute's ms, last seq)."""
    t0 = minute_ago_ns()
    await publish(market.js, "trade", "AAPL-1", "AAPL", 19050, 10000, t0 + 1 * SECOND_NS)
    await publish(market.js, "trade", "AAPL-2", "AAPL", 19100, 20000, t0 + 2 * SECOND_NS, side="SELL")
    ack = await publish(market.js, "trade", "AAPL-3", "AAPL", 19075, 5000, t0 + 3 * SECOND_NS)
    return t0 // 1_000_000, ack.seq


async def test_ticker_candles_and_tape_are_decimal_strings_on_json(market: Market) -> None:
    await market.start()
    minute, seq = await three_aapl_trades(market)
    ticker = await wait_seq(market.nc, "AAPL", seq)
    assert ticker == {"instrument": "AAPL", "last": "190.75", "open": "190.50", "high": "191.00", "low": "190.50",
                      "change": "0.25", "volume": "3.5000", "quote_volume": "667.87", "trades": 3, "seq": seq,
                      "ts": minute + 3000}
    candles = await md(market.nc, "candles", instrument="AAPL")
    assert candles == {"instrument": "AAPL", "tf": "1m", "seq": seq, "candles": [
        {"tf": "1m", "start": minute, "open": "190.50", "high": "191.00", "low": "190.50", "close": "190.75",
         "volume": "3.5000", "quote_volume": "667.87", "trades": 3}]}
    tape = await md(market.nc, "trades", instrument="AAPL", limit=2)
    assert tape == {"instrument": "AAPL", "seq": seq, "trades": [
        {"trade_id": "AAPL-3", "price": "190.75", "qty": "0.5000", "quote": "95.37", "taker_side": "BUY",
         "ts": minute + 3000},
        {"trade_id": "AAPL-2", "price": "191.00", "qty": "2.0000", "quote": "382.00", "taker_side": "SELL",
         "ts": minute + 2000}]}


async def test_msgpack_callers_get_integer_units(market: Market) -> None:
    await market.start()
    minute, seq = await three_aapl_trades(market)
    await wait_seq(market.nc, "AAPL", seq)
    ticker = await md(market.nc, "ticker", Wire.MSGPACK, instrument="AAPL")
    assert (ticker["last"], ticker["volume"], ticker["quote_volume"]) == (19075, 35000, 66787)
    hour = await md(market.nc, "candles", Wire.MSGPACK, instrument="AAPL", tf="1h")
    assert hour["candles"][0]["start"] == minute - minute % 3_600_000
    assert (hour["candles"][0]["high"], hour["candles"][0]["trades"]) == (19100, 3)


async def test_a_bust_takes_its_trade_out_of_tape_candles_and_ticker(market: Market) -> None:
    await market.start()
    _, _ = await three_aapl_trades(market)
    bust = await publish(market.js, "bust", "AAPL-2", "AAPL", 19100, 20000, minute_ago_ns(0))
    ticker = await wait_seq(market.nc, "AAPL", bust.seq)
    assert (ticker["high"], ticker["volume"], ticker["trades"], ticker["last"]) == ("190.75", "1.5000", 2, "190.75")
    for tf in ("1m", "5m", "1h"):
        (candle,) = (await md(market.nc, "candles", instrument="AAPL", tf=tf))["candles"]
        assert (candle["high"], candle["volume"], candle["trades"]) == ("190.75", "1.5000", 2), tf
    tape = await md(market.nc, "trades", instrument="AAPL")
    assert [t["trade_id"] for t in tape["trades"]] == ["AAPL-3", "AAPL-1"]


async def test_a_trade_delivered_twice_counts_once(market: Market) -> None:
    await market.start()
    t0 = minute_ago_ns()
    first = await publish(market.js, "trade", "NVDA-1", "NVDA", 82550, 10000, t0)
    same = await publish(market.js, "trade", "NVDA-1", "NVDA", 82550, 10000, t0)
    assert same.duplicate  # inside the window the stream drops it ...
    # ... past the window clearing's republish is a second message with a later time
    again = await publish(market.js, "trade", "NVDA-1", "NVDA", 82550, 10000, t0 + 5 * SECOND_NS, msg_id="late")
    assert again.seq > first.seq and not again.duplicate
    last = await publish(market.js, "trade", "NVDA-2", "NVDA", 82600, 10000, t0 + 9 * SECOND_NS)
    ticker = await wait_seq(market.nc, "NVDA", last.seq)
    assert (ticker["trades"], ticker["volume"]) == (2, "2.0000")
    tape = await md(market.nc, "trades", instrument="NVDA")
    assert [(t["trade_id"], t["ts"]) for t in tape["trades"]] == [("NVDA-2", (t0 + 9 * SECOND_NS) // 1_000_000),
                                                                   ("NVDA-1", t0 // 1_000_000)]


async def test_an_instrument_without_trades_has_an_empty_ticker(market: Market) -> None:
    await market.start()
    assert await md(market.nc, "ticker", instrument="ETH-USD") == {
        "instrument": "ETH-USD", "last": None, "open": None, "high": None, "low": None, "change": None,
        "volume": "0.00000000", "quote_volume": "0.00", "trades": 0, "seq": 0, "ts": None}
    assert (await md(market.nc, "candles", instrument="ETH-USD", tf="5m"))["candles"] == []


BAD: list[tuple[str, dict[str, Any], ErrorCode]] = [
    ("ticker", {"instrument": "DOGE"}, ErrorCode.UNKNOWN_INSTRUMENT),
    ("candles", {"instrument": "DOGE-USD"}, ErrorCode.UNKNOWN_INSTRUMENT),
    ("trades", {"instrument": "aapl"}, ErrorCode.UNKNOWN_INSTRUMENT),
    ("ticker", {}, ErrorCode.VALIDATION),
    ("ticker", {"instrument": 7}, ErrorCode.VALIDATION),
    ("candles", {"instrument": "AAPL", "tf": "15m"}, ErrorCode.VALIDATION),
    ("candles", {"instrument": "AAPL", "limit": 0}, ErrorCode.VALIDATION),
    ("candles", {"instrument": "AAPL", "limit": 1001}, ErrorCode.VALIDATION),
    ("candles", {"instrument": "AAPL", "limit": "10"}, ErrorCode.VALIDATION),
    ("candles", {"instrument": "AAPL", "before": -1}, ErrorCode.VALIDATION),
    ("trades", {"instrument": "AAPL", "limit": 1001}, ErrorCode.VALIDATION),
    ("trades", {"instrument": "AAPL", "since": 0}, ErrorCode.VALIDATION),
]


async def test_bad_queries_answer_precise_codes(market: Market) -> None:
    await market.start()
    for endpoint, body, code in BAD:
        with pytest.raises(QtError) as refused:
            await md(market.nc, endpoint, **body)
        assert refused.value.code is code, (endpoint, body, refused.value)
    ok = await md(market.nc, "candles", instrument="AAPL", tf="1h", limit=1000, before=0)
    assert ok["candles"] == []
