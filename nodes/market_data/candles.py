"""Candles from trades: 1m buckets by trade time hold their trades, 5m and 1h roll up the 1m candles.

Merging candles is commutative and associative (open and close carry the time key of their trade),
so adding a trade is one merge per timeframe, arrival order never matters, and removing a busted
trade recomputes its 1m candle from the trades left and its rollups from their 1m candles.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Final

from contracts.market_data import TIMEFRAME_MS

MINUTE_MS: Final = TIMEFRAME_MS["1m"]
HOUR_MS: Final = TIMEFRAME_MS["1h"]
#: Timeframes rolled up from 1m candles.
ROLLUPS: Final = tuple(tf for tf in TIMEFRAME_MS if tf != "1m")

Key = tuple[int, str]


@dataclass(frozen=True, slots=True)
class Print:
    """A settled trade as market data keeps it: integer units, nanosecond time."""

    trade_id: str
    price: int
    qty: int
    quote: int
    taker_side: str
    ts_ns: int

    @property
    def key(self) -> Key:
        """Its place in time: trade time, then id (trades in the same nanosecond)."""
        return (self.ts_ns, self.trade_id)

    @property
    def ts_ms(self) -> int:
        """Epoch milliseconds of the trade."""
        return self.ts_ns // 1_000_000


@dataclass(frozen=True, slots=True)
class OHLCV:
    """Open, high, low, close and volumes of a set of trades; `first`/`last` are the keys of the
    trades that opened and closed it."""

    first: Key
    last: Key
    open: int
    high: int
    low: int
    close: int
    volume: int
    quote_volume: int
    trades: int

    @classmethod
    def of(cls, trade: Print) -> OHLCV:
        """The candle of one trade."""
        p = trade.price
        return cls(trade.key, trade.key, p, p, p, p, trade.qty, trade.quote, 1)

    def merge(self, other: OHLCV) -> OHLCV:
        """The candle of both sets of trades (which must not overlap)."""
        first = self if self.first <= other.first else other
        last = self if self.last >= other.last else other
        return OHLCV(first.first, last.last, first.open, max(self.high, other.high), min(self.low, other.low),
                     last.close, self.volume + other.volume, self.quote_volume + other.quote_volume,
                     self.trades + other.trades)


def aggregate(candles: Iterable[OHLCV | None]) -> OHLCV | None:
    """Merge the candles given (None skipped); None when there are none."""
    out: OHLCV | None = None
    for candle in candles:
        if candle is not None:
            out = candle if out is None else out.merge(candle)
    return out


def bucket(ts_ms: int, tf: str) -> int:
    """Start (epoch ms) of the `tf` bucket holding `ts_ms`."""
    return ts_ms - ts_ms % TIMEFRAME_MS[tf]


class CandleSeries:
    """One instrument's candles of every timeframe, and the trades inside each 1m candle."""

    def __init__(self) -> None:
        self.minutes: dict[int, dict[str, Print]] = {}
        self.candles: dict[str, dict[int, OHLCV]] = {tf: {} for tf in TIMEFRAME_MS}
        self.starts: dict[str, list[int]] = {tf: [] for tf in TIMEFRAME_MS}
        """Bucket starts per timeframe, ascending (for ranges and the tape)."""

    def add(self, trade: Print) -> None:
        """Count a trade the series does not hold yet."""
        self.minutes.setdefault(bucket(trade.ts_ms, "1m"), {})[trade.trade_id] = trade
        single = OHLCV.of(trade)
        for tf in TIMEFRAME_MS:
            start = bucket(trade.ts_ms, tf)
            held = self.candles[tf].get(start)
            self._put(tf, start, single if held is None else held.merge(single))

    def remove(self, trade: Print) -> None:
        """Take out a trade the series holds: its candles become what they would be without it."""
        minute = bucket(trade.ts_ms, "1m")
        trades = self.minutes[minute]
        del trades[trade.trade_id]
        if not trades:
            del self.minutes[minute]
        self._put("1m", minute, aggregate(OHLCV.of(t) for t in trades.values()))
        for tf in ROLLUPS:
            start = bucket(trade.ts_ms, tf)
            self._put(tf, start, self.rollup(tf, start))

    def rollup(self, tf: str, start: int) -> OHLCV | None:
        """The `tf` candle at `start` aggregated from its 1m candles."""
        minutes = self.candles["1m"]
        return aggregate(minutes.get(m) for m in range(start, start + TIMEFRAME_MS[tf], MINUTE_MS))

    def get(self, tf: str, start: int) -> OHLCV | None:
        """The `tf` candle starting at `start`, if it has trades."""
        return self.candles[tf].get(start)

    def since(self, tf: str, start: int) -> Iterator[OHLCV]:
        """The `tf` candles starting at or after `start`, oldest first."""
        starts = self.starts[tf]
        candles = self.candles[tf]
        for s in starts[bisect_left(starts, start):]:
            yield candles[s]

    def latest(self) -> OHLCV | None:
        """The newest candle (its close is the last price), from the longest-kept timeframe."""
        starts = self.starts["1h"]
        return self.candles["1h"][starts[-1]] if starts else None

    def window(self, tf: str, limit: int, before: int | None = None, after: int | None = None
               ) -> list[tuple[int, OHLCV]]:
        """(start, candle) with after < start < before, oldest first: the newest `limit`, or the oldest
        `limit` when only `after` is given."""
        starts = self.starts[tf]
        lo = 0 if after is None else bisect_left(starts, after + 1)
        hi = len(starts) if before is None else bisect_left(starts, before)
        if hi - lo > limit:
            lo, hi = (lo, lo + limit) if before is None and after is not None else (hi - limit, hi)
        return [(s, self.candles[tf][s]) for s in starts[lo:hi]]

    def tape(self, limit: int) -> list[Print]:
        """The newest `limit` trades, newest first."""
        out: list[Print] = []
        for minute in reversed(self.starts["1m"]):
            out.extend(sorted(self.minutes[minute].values(), key=lambda t: t.key, reverse=True))
            if len(out) >= limit:
                break
        return out[:limit]

    def prune(self, tf: str, keep_from: int) -> list[Print]:
        """Forget `tf` candles starting before `keep_from`; returns the trades forgotten with 1m candles."""
        starts = self.starts[tf]
        cut = bisect_left(starts, keep_from)
        gone: list[Print] = []
        for start in starts[:cut]:
            del self.candles[tf][start]
            if tf == "1m":
                gone.extend(self.minutes.pop(start).values())
        del starts[:cut]
        return gone

    def _put(self, tf: str, start: int, candle: OHLCV | None) -> None:
        candles = self.candles[tf]
        if candle is None:
            if candles.pop(start, None) is not None:
                starts = self.starts[tf]
                del starts[bisect_left(starts, start)]
            return
        if start not in candles:
            insort(self.starts[tf], start)
        candles[start] = candle
