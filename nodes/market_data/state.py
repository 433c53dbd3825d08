"""Market state folded from TRADES events: settled trades counted once, busts taking theirs out.

Pure: the node feeds events in stream order; the same events in any order give the same state, as
long as no trade arrives more than the 1m retention behind the newest (see `RETENTION_HOURS`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Literal

from nodes.market_data.candles import HOUR_MS, CandleSeries, Print, bucket

Kind = Literal["trade", "bust"]

#: Hours kept before the newest trade's hour, per timeframe. Trades live as long as their 1m
#: candles: 25 h covers the 24h ticker and 1000 1m candles (the query limit); 5m and 1h keep
#: more than 1000 candles too. Whole hours are dropped, so a kept rollup always has all its
#: 1m candles, and a busted trade that is still kept recomputes them exactly.
RETENTION_HOURS: Final[dict[str, int]] = {"1m": 25, "5m": 96, "1h": 1008}
#: Busts are remembered a little longer than trades, against clocks of clearing instances that disagree.
BUST_MEMORY_MS: Final = HOUR_MS


@dataclass(frozen=True, slots=True)
class Change:
    """What one TRADES event did to an instrument: the trade it added (`trade`) or took out (`bust`)."""

    kind: Kind
    trade: Print
    seq: int
    """TRADES stream sequence of the event."""
    prev_seq: int
    """Sequence of the instrument's previous change (0 for its first)."""


class InstrumentState:
    """One instrument: its candles and tape, the trades behind them by id, and the trades busted."""

    def __init__(self, symbol: str) -> None:
        self.symbol = symbol
        self.series = CandleSeries()
        self.trades: dict[str, Print] = {}
        self.busted: dict[str, int] = {}
        """Trade id -> time of its bust, so a copy of the trade arriving after it stays out."""
        self.newest_ns = 0
        """Time of the newest trade event seen (busted or not): retention counts back from its hour."""
        self.seq = 0
        """TRADES sequence of the last event that changed this instrument."""

    def apply(self, seq: int, kind: Kind, trade: Print) -> Change | None:
        """Fold one event; None when it changes nothing (a repeat, a bust of an unknown or dropped trade)."""
        done = self._count(trade) if kind == "trade" else self._bust(trade)
        if done is None:
            return None
        change = Change(kind, done, seq, self.seq)
        self.seq = seq
        return change

    def keep_from(self, tf: str) -> int:
        """Epoch ms of the oldest `tf` bucket kept."""
        return bucket(self.newest_ns // 1_000_000, "1h") - RETENTION_HOURS[tf] * HOUR_MS

    def _count(self, trade: Print) -> Print | None:
        self._advance(trade.ts_ns)
        if trade.trade_id in self.trades or trade.trade_id in self.busted:
            return None  # the first copy of a trade is the one that counts
        if trade.ts_ms < self.keep_from("1m"):
            return None  # too old to be placed (or busted) exactly any more
        self.trades[trade.trade_id] = trade
        self.series.add(trade)
        return trade

    def _bust(self, event: Print) -> Print | None:
        self.busted[event.trade_id] = event.ts_ns
        trade = self.trades.pop(event.trade_id, None)
        if trade is not None:
            self.series.remove(trade)
        return trade

    def _advance(self, ts_ns: int) -> None:
        if ts_ns <= self.newest_ns:
            return
        before = self.keep_from("1m")
        self.newest_ns = ts_ns
        if self.keep_from("1m") == before:
            return
        for tf in RETENTION_HOURS:
            self._forget(self.series.prune(tf, self.keep_from(tf)))
        oldest_bust = (self.keep_from("1m") - BUST_MEMORY_MS) * 1_000_000
        self.busted = {tid: ts for tid, ts in self.busted.items() if ts >= oldest_bust}

    def _forget(self, trades: Iterable[Print]) -> None:
        for trade in trades:
            del self.trades[trade.trade_id]


class MarketState:
    """Every listed instrument, fed TRADES events in stream order; a redelivered sequence is ignored."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self.instruments = {symbol: InstrumentState(symbol) for symbol in symbols}
        self.applied_seq = 0
        """The last TRADES stream sequence folded in."""

    def apply(self, seq: int, symbol: str, kind: Kind, trade: Print) -> Change | None:
        """Fold the event at stream sequence `seq` (once)."""
        if seq <= self.applied_seq:
            return None
        self.applied_seq = seq
        return self.instruments[symbol].apply(seq, kind, trade)

    def skip(self, seq: int) -> None:
        """Pass over a stream message that is not a readable trade event."""
        self.applied_seq = max(self.applied_seq, seq)
