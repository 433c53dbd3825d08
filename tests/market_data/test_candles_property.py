"""Property tests of the pure candle core: exact against a naive model, busts undo exactly, order is irrelevant."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.market_data import TIMEFRAME_MS
from nodes.market_data.candles import OHLCV, CandleSeries, Print, bucket

BASE_NS = 1_700_000_000_000 * 1_000_000  # a fixed epoch, minute-aligned
SPAN_MS = 3 * 3_600_000  # three hours: several of every bucket


@st.composite
def prints(draw: st.DrawFn, max_size: int = 60, span_ms: int = SPAN_MS) -> list[Print]:
    """Trades with unique ids, times on a millisecond grid (some equal) within `span_ms`, prices and sizes."""
    n = draw(st.integers(0, max_size))
    offsets = draw(st.lists(st.integers(0, span_ms), min_size=n, max_size=n))
    out = []
    for i, offset in enumerate(offsets):
        price = draw(st.integers(1, 50)) * 100
        qty = draw(st.integers(1, 1000))
        out.append(Print(f"T-{i}", price, qty, price * qty // 100, draw(st.sampled_from(["BUY", "SELL"])),
                         BASE_NS + offset * 1_000_000))
    return out


def naive(trades: list[Print], tf: str) -> dict[int, tuple[Any, ...]]:
    """Candles by sorting each bucket's trades: (open, high, low, close, volume, quote volume, count)."""
    groups: dict[int, list[Print]] = defaultdict(list)
    for t in trades:
        groups[bucket(t.ts_ms, tf)].append(t)
    out = {}
    for start, group in groups.items():
        group.sort(key=lambda t: t.key)
        prices = [t.price for t in group]
        out[start] = (prices[0], max(prices), min(prices), prices[-1], sum(t.qty for t in group),
                      sum(t.quote for t in group), len(group))
    return out


def plain(series: CandleSeries, tf: str) -> dict[int, tuple[Any, ...]]:
    """The series' candles in the naive model's shape."""
    return {s: (c.open, c.high, c.low, c.close, c.volume, c.quote_volume, c.trades)
            for s, c in series.candles[tf].items()}


def series_of(trades: list[Print]) -> CandleSeries:
    """A series fed `trades` in the order given."""
    series = CandleSeries()
    for t in trades:
        series.add(t)
    return series


@settings(max_examples=200, deadline=None)
@given(prints())
def test_every_timeframe_equals_the_naive_candles_of_its_trades(trades: list[Print]) -> None:
    series = series_of(trades)
    for tf in TIMEFRAME_MS:
        assert plain(series, tf) == naive(trades, tf)
        assert series.starts[tf] == sorted(series.candles[tf])


@settings(max_examples=200, deadline=None)
@given(prints(), st.data())
def test_removing_busted_trades_leaves_the_candles_of_the_rest(trades: list[Print], data: st.DataObject) -> None:
    busted = data.draw(st.sets(st.sampled_from([t.trade_id for t in trades])) if trades else st.just(set()))
    series = series_of(trades)
    for t in data.draw(st.permutations([t for t in trades if t.trade_id in busted])):
        series.remove(t)
    rest = [t for t in trades if t.trade_id not in busted]
    expected = series_of(rest)
    for tf in TIMEFRAME_MS:
        assert series.candles[tf] == expected.candles[tf]
        assert series.starts[tf] == expected.starts[tf]
    assert series.minutes == expected.minutes
    assert series.tape(1000) == expected.tape(1000)


@settings(max_examples=200, deadline=None)
@given(prints(), st.data())
def test_rollups_are_the_aggregation_of_their_1m_candles(trades: list[Print], data: st.DataObject) -> None:
    series = series_of(trades)
    for t in data.draw(st.lists(st.sampled_from(trades), unique_by=lambda t: t.trade_id) if trades else st.just([])):
        series.remove(t)
    for tf in ("5m", "1h"):
        for start, candle in series.candles[tf].items():
            assert series.rollup(tf, start) == candle
        assert {bucket(m, tf) for m in series.candles["1m"]} == set(series.candles[tf])


@settings(max_examples=200, deadline=None)
@given(prints(), st.data())
def test_the_order_trades_arrive_in_does_not_matter(trades: list[Print], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(trades))
    a, b = series_of(trades), series_of(shuffled)
    for tf in TIMEFRAME_MS:
        assert a.candles[tf] == b.candles[tf]
    assert a.tape(1000) == b.tape(1000)


@settings(max_examples=100, deadline=None)
@given(prints())
def test_the_tape_is_every_trade_newest_first(trades: list[Print]) -> None:
    series = series_of(trades)
    newest_first = sorted(trades, key=lambda t: t.key, reverse=True)
    assert series.tape(1000) == newest_first
    assert series.tape(7) == newest_first[:7]


def test_merge_is_commutative_and_keeps_the_earliest_open_and_latest_close() -> None:
    early = OHLCV.of(Print("a", 100, 1, 1, "BUY", 1))
    late = OHLCV.of(Print("b", 300, 2, 6, "SELL", 2))
    merged = early.merge(late)
    assert merged == late.merge(early)
    assert (merged.open, merged.high, merged.low, merged.close, merged.volume, merged.trades) == (100, 300, 100, 300,
                                                                                                  3, 2)


def test_window_pages_back_from_before_and_forward_from_after() -> None:
    minute = TIMEFRAME_MS["1m"]
    series = series_of([Print(f"t{i}", 100, 1, 1, "BUY", BASE_NS + i * minute * 1_000_000) for i in range(10)])
    starts = [s for s, _ in series.window("1m", 100)]
    assert len(starts) == 10 and starts == sorted(starts)
    assert [s for s, _ in series.window("1m", 3)] == starts[-3:]
    assert [s for s, _ in series.window("1m", 3, before=starts[5])] == starts[2:5]
    assert [s for s, _ in series.window("1m", 3, after=starts[5])] == starts[6:9]
    assert [s for s, _ in series.window("1m", 100, before=starts[5], after=starts[1])] == starts[2:5]
    assert series.window("1m", 100, before=starts[0]) == []
