"""The 24h ticker of an instrument, aggregated from its candles (pure: the clock is an argument).

The window is the 1440 one-minute buckets up to the current one (and anything newer, should a
clock run ahead): 1m candles up to the first whole hour, then 1h candles, so at most 83 merges.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from nodes.market_data.candles import HOUR_MS, MINUTE_MS, OHLCV, CandleSeries, aggregate, bucket

DAY_MINUTES: Final = 1440


@dataclass(frozen=True, slots=True)
class DayStats:
    """Last price (any age) and the trades of the 24h window (None when it has none)."""

    last: OHLCV | None
    day: OHLCV | None


def window_start(now_ms: int) -> int:
    """Epoch ms of the first 1m bucket of the 24h window ending with the bucket of `now_ms`."""
    return bucket(now_ms, "1m") - (DAY_MINUTES - 1) * MINUTE_MS


def day_stats(series: CandleSeries, now_ms: int) -> DayStats:
    """The ticker's numbers at `now_ms`."""
    first_minute = window_start(now_ms)
    first_hour = -(-first_minute // HOUR_MS) * HOUR_MS
    head = (series.get("1m", m) for m in range(first_minute, first_hour, MINUTE_MS))
    day = aggregate([*head, *series.since("1h", first_hour)])
    return DayStats(last=series.latest(), day=day)
