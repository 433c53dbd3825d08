"""What clients see of the market state: the contract views, and the live messages for one change.

Live messages are JSON with decimal strings (the gateway forwards them as they are); each carries
`seq` (the TRADES sequence of the change) and `prev_seq` (the instrument's previous change), and
every change of an instrument updates all of its feeds, so a gap on any subject shows as
`prev_seq` differing from the last `seq` seen there.
"""

from __future__ import annotations

from typing import Any

from contracts.codec import Wire, encode
from contracts.market_data import TIMEFRAME_MS, Candle, CandlesQuery, CandlesReply, TapeTrade, Ticker, TradesReply
from contracts.subjects import candles_feed_subject, ticker_feed_subject, trades_feed_subject
from nodes.market_data.candles import OHLCV, Print, bucket
from nodes.market_data.state import Change, InstrumentState
from nodes.market_data.ticker import day_stats


def candle_view(tf: str, start: int, ohlcv: OHLCV | None) -> Candle:
    """A candle as the contract has it; `None` (emptied by a bust) has no prices and zero volume."""
    if ohlcv is None:
        return Candle.model_construct(tf=tf, start=start, open=None, high=None, low=None, close=None, volume=0,
                                      quote_volume=0, trades=0)
    return Candle.model_construct(tf=tf, start=start, open=ohlcv.open, high=ohlcv.high, low=ohlcv.low,
                                  close=ohlcv.close, volume=ohlcv.volume, quote_volume=ohlcv.quote_volume,
                                  trades=ohlcv.trades)


def tape_view(trade: Print) -> TapeTrade:
    """A kept trade as the tape shows it."""
    return TapeTrade.model_construct(trade_id=trade.trade_id, price=trade.price, qty=trade.qty, quote=trade.quote,
                                     taker_side=trade.taker_side, ts=trade.ts_ms)


def ticker_view(state: InstrumentState, now_ms: int) -> Ticker:
    """The instrument's ticker at `now_ms`."""
    stats = day_stats(state.series, now_ms)
    last = stats.last.close if stats.last else None
    day = stats.day
    return Ticker.model_construct(
        instrument=state.symbol, last=last, open=day.open if day else None, high=day.high if day else None,
        low=day.low if day else None, change=last - day.open if day and last is not None else None,
        volume=day.volume if day else 0, quote_volume=day.quote_volume if day else 0,
        trades=day.trades if day else 0, seq=state.seq, ts=stats.last.last[0] // 1_000_000 if stats.last else None,
    )


def candles_view(state: InstrumentState, query: CandlesQuery) -> CandlesReply:
    """The candles a query asks for."""
    found = state.series.window(query.tf, query.limit, query.before, query.after)
    return CandlesReply.model_construct(instrument=state.symbol, tf=query.tf, seq=state.seq,
                                        candles=[candle_view(query.tf, s, c) for s, c in found])


def trades_view(state: InstrumentState, limit: int) -> TradesReply:
    """The newest `limit` trades."""
    return TradesReply.model_construct(instrument=state.symbol, seq=state.seq,
                                       trades=[tape_view(t) for t in state.series.tape(limit)])


def live_messages(state: InstrumentState, change: Change, now_ms: int) -> list[tuple[str, bytes]]:
    """(subject, JSON payload) for every feed `change` touched: the trade, its candles, the ticker."""
    symbol = state.symbol
    order = {"seq": change.seq, "prev_seq": change.prev_seq}
    trade = {**order, "instrument": symbol, "kind": change.kind,
             **tape_view(change.trade).render(symbol, Wire.JSON)}
    out = [(trades_feed_subject(symbol), trade)]
    for tf in TIMEFRAME_MS:
        start = bucket(change.trade.ts_ms, tf)
        candle = candle_view(tf, start, state.series.get(tf, start)).render(symbol, Wire.JSON)
        out.append((candles_feed_subject(symbol, tf), {**order, "instrument": symbol, **candle}))
    ticker: dict[str, Any] = {**ticker_view(state, now_ms).to_wire(Wire.JSON), "prev_seq": change.prev_seq}
    out.append((ticker_feed_subject(symbol), ticker))
    return [(subject, encode(body, Wire.JSON)) for subject, body in out]
