"""Property tests of the market state: duplicates count once, busts remove their trade, any order, 24h stats."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.market_data import TIMEFRAME_MS
from nodes.market_data.candles import HOUR_MS, Print, bucket
from nodes.market_data.state import InstrumentState, Kind, MarketState
from nodes.market_data.ticker import day_stats, window_start
from tests.market_data.test_candles_property import BASE_NS, SPAN_MS, naive, plain, prints

Event = tuple[Kind, Print]


def fold(events: list[Event]) -> InstrumentState:
    """An instrument fed `events`, numbered in the order given."""
    state = InstrumentState("AAPL")
    for seq, (kind, trade) in enumerate(events, start=1):
        state.apply(seq, kind, trade)
    return state


def picture(state: InstrumentState, now_ms: int) -> tuple[Any, ...]:
    """Everything a client can see of an instrument, plus the trades kept behind it."""
    return ({tf: plain(state.series, tf) for tf in TIMEFRAME_MS}, state.series.tape(10**6),
            day_stats(state.series, now_ms), dict(state.trades))


def bust_of(trade: Print, later_ms: int) -> Print:
    """The bust event of `trade`, published `later_ms` after it."""
    return Print(trade.trade_id, trade.price, trade.qty, trade.quote, trade.taker_side,
                 trade.ts_ns + later_ms * 1_000_000)


@st.composite
def histories(draw: st.DrawFn) -> tuple[list[Print], set[str], list[Event]]:
    """(trades, ids busted, events): every trade once or more (exact copies), some busted, shuffled."""
    trades = draw(prints())
    ids = [t.trade_id for t in trades]
    busted = draw(st.sets(st.sampled_from(ids))) if ids else set()
    events: list[Event] = []
    for t in trades:
        events.extend([("trade", t)] * draw(st.integers(1, 3)))
        if t.trade_id in busted:
            events.extend([("bust", bust_of(t, draw(st.integers(0, 60_000))))] * draw(st.integers(1, 2)))
    return trades, busted, draw(st.permutations(events))


@settings(max_examples=200, deadline=None)
@given(histories(), st.integers(0, SPAN_MS + 2 * HOUR_MS))
def test_any_history_folds_to_the_state_of_its_unbusted_trades(history: Any, now_offset_ms: int) -> None:
    trades, busted, events = history
    now_ms = BASE_NS // 1_000_000 + now_offset_ms
    rest = [t for t in trades if t.trade_id not in busted]
    assert picture(fold(events), now_ms) == picture(fold([("trade", t) for t in rest]), now_ms)
    assert {tf: plain(fold(events).series, tf) for tf in TIMEFRAME_MS} == {tf: naive(rest, tf) for tf in TIMEFRAME_MS}


@settings(max_examples=200, deadline=None)
@given(histories(), st.data())
def test_the_order_events_arrive_in_does_not_matter(history: Any, data: st.DataObject) -> None:
    _, _, events = history
    again = data.draw(st.permutations(events))
    now_ms = BASE_NS // 1_000_000 + SPAN_MS
    assert picture(fold(events), now_ms) == picture(fold(again), now_ms)


@settings(max_examples=200, deadline=None)
@given(prints(), st.integers(0, SPAN_MS + 26 * HOUR_MS))
def test_day_stats_are_the_trades_of_the_last_1440_minutes(trades: list[Print], now_offset_ms: int) -> None:
    now_ms = BASE_NS // 1_000_000 + now_offset_ms
    stats = day_stats(fold([("trade", t) for t in trades]).series, now_ms)
    inside = sorted((t for t in trades if bucket(t.ts_ms, "1m") >= window_start(now_ms)), key=lambda t: t.key)
    if not inside:
        assert stats.day is None
    else:
        assert stats.day is not None
        assert (stats.day.open, stats.day.close) == (inside[0].price, inside[-1].price)
        assert (stats.day.high, stats.day.low) == (max(t.price for t in inside), min(t.price for t in inside))
        assert (stats.day.volume, stats.day.trades) == (sum(t.qty for t in inside), len(inside))
        assert stats.day.quote_volume == sum(t.quote for t in inside)
    newest = max(trades, key=lambda t: t.key, default=None)
    assert (stats.last.close if stats.last else None) == (newest.price if newest else None)


@settings(max_examples=100, deadline=None)
@given(prints(span_ms=60 * HOUR_MS), st.data())
def test_retention_keeps_exactly_the_recent_minutes_and_every_hour(trades: list[Print], data: st.DataObject) -> None:
    busted = {t.trade_id for t in trades if data.draw(st.booleans())}
    events: list[Event] = []
    for t in sorted(trades, key=lambda t: t.key):  # in time order, each bust right after its trade
        events.append(("trade", t))
        if t.trade_id in busted:
            events.append(("bust", bust_of(t, 0)))
    state = fold(events)
    rest = [t for t in trades if t.trade_id not in busted]
    assert plain(state.series, "1h") == naive(rest, "1h")
    recent = [t for t in rest if t.ts_ms >= state.keep_from("1m")]
    assert plain(state.series, "1m") == naive(recent, "1m")
    assert set(state.trades) == {t.trade_id for t in recent}


def test_a_change_carries_its_sequence_and_the_previous_one() -> None:
    state = MarketState(["AAPL", "MSFT"])
    one = Print("t1", 100, 1, 1, "BUY", BASE_NS)
    first = state.apply(3, "AAPL", "trade", one)
    assert first is not None and (first.seq, first.prev_seq) == (3, 0)
    assert state.apply(3, "AAPL", "trade", one) is None  # a redelivered stream sequence
    assert state.apply(4, "MSFT", "trade", Print("m1", 100, 1, 1, "BUY", BASE_NS)) is not None
    assert state.apply(5, "AAPL", "trade", one) is None  # the same trade again, under another sequence
    bust = state.apply(6, "AAPL", "bust", one)
    assert bust is not None and (bust.kind, bust.seq, bust.prev_seq) == ("bust", 6, 3)
    assert state.apply(7, "AAPL", "bust", one) is None
    assert state.instruments["AAPL"].seq == 6 and state.applied_seq == 7


def test_retention_drops_old_minutes_keeps_rollups_and_refuses_trades_too_old_to_place() -> None:
    state = InstrumentState("AAPL")
    old = Print("old", 100, 1, 1, "BUY", BASE_NS)
    state.apply(1, "trade", old)
    state.apply(2, "trade", Print("new", 200, 1, 2, "BUY", BASE_NS + 30 * HOUR_MS * 1_000_000))
    assert "old" not in state.trades and bucket(old.ts_ms, "1m") not in state.series.candles["1m"]
    assert state.series.get("1h", bucket(old.ts_ms, "1h")) is not None  # the hour is still charted
    assert state.apply(3, "trade", Print("late", 300, 1, 3, "BUY", BASE_NS + 1)) is None
    assert state.apply(4, "bust", old) is None  # nothing left to take out exactly
    assert [t.trade_id for t in state.series.tape(10)] == ["new"]
