"""Market data messages: ticker, candle and tape queries, and the views they (and the live feeds) carry.

Views hold integer units; `render` turns them into decimal strings on the JSON wire and leaves
integers on msgpack. Prices and quote amounts use the quote asset's scale, volumes the base's.
"""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from pydantic import Field, model_validator

from contracts.base import MAX_CURSOR, Message
from contracts.codec import Wire
from contracts.instruments import Instrument, instrument
from contracts.money import format_amount

Timeframe = Literal["1m", "5m", "1h"]
#: Length of each candle timeframe in milliseconds.
TIMEFRAME_MS: Final[dict[str, int]] = {"1m": 60_000, "5m": 300_000, "1h": 3_600_000}
MAX_LIMIT: Final = 1000
Limit = Annotated[int, Field(ge=1, le=MAX_LIMIT)]
EpochMs = Annotated[int, Field(ge=0, le=MAX_CURSOR)]


class InstrumentQuery(Message):
    """A query about one listed instrument; an unlisted one is `unknown_instrument`."""

    instrument: str

    @model_validator(mode="after")
    def _listed(self) -> InstrumentQuery:
        instrument(self.instrument)
        return self


class TickerQuery(InstrumentQuery):
    """The ticker of one instrument."""


class CandlesQuery(InstrumentQuery):
    """Candles with `after < start < before` (epoch ms, each optional), oldest first: the newest `limit`
    of them, or the oldest `limit` when only `after` is given (paging forward)."""

    tf: Timeframe = "1m"
    limit: Limit = 100
    before: EpochMs | None = None
    after: EpochMs | None = None


class TradesQuery(InstrumentQuery):
    """The newest trades of one instrument (the tape), newest first."""

    limit: Limit = 100


def _price(spec: Instrument, value: int | None, wire: Wire) -> Any:
    return format_amount(spec.quote, value) if wire is Wire.JSON and value is not None else value


def _qty(spec: Instrument, value: int, wire: Wire) -> Any:
    return format_amount(spec.base, value) if wire is Wire.JSON else value


class Candle(Message):
    """OHLCV of the trades whose time falls in [start, start + tf); OHLC are null only when a bust
    emptied the candle (sent on the live feed, never listed)."""

    tf: Timeframe
    start: int
    """Epoch milliseconds, a multiple of the timeframe."""
    open: int | None
    high: int | None
    low: int | None
    close: int | None
    volume: int
    """Base units traded."""
    quote_volume: int
    """Quote units traded (each trade's quote amount, rounded down)."""
    trades: int

    def render(self, symbol: str, wire: str) -> dict[str, Any]:
        """The candle on `wire`: decimal strings in JSON (prices in quote, volume in base)."""
        spec, w = instrument(symbol), Wire(wire)
        return {"tf": self.tf, "start": self.start, "open": _price(spec, self.open, w),
                "high": _price(spec, self.high, w), "low": _price(spec, self.low, w),
                "close": _price(spec, self.close, w), "volume": _qty(spec, self.volume, w),
                "quote_volume": _price(spec, self.quote_volume, w), "trades": self.trades}


class TapeTrade(Message):
    """One settled trade as the tape shows it."""

    trade_id: str
    price: int
    qty: int
    quote: int
    taker_side: Literal["BUY", "SELL"]
    ts: int
    """Epoch milliseconds of the trade (clearing's settlement time)."""

    def render(self, symbol: str, wire: str) -> dict[str, Any]:
        """The trade on `wire`: decimal strings in JSON."""
        spec, w = instrument(symbol), Wire(wire)
        return {"trade_id": self.trade_id, "price": _price(spec, self.price, w), "qty": _qty(spec, self.qty, w),
                "quote": _price(spec, self.quote, w), "taker_side": self.taker_side, "ts": self.ts}


class Ticker(Message):
    """Last price and the last 24 hours (1440 one-minute buckets up to the current one) of an instrument."""

    instrument: str
    last: int | None
    """Price of the newest trade, however old; null when there never was one."""
    open: int | None
    """Price of the first trade in the window; with high and low, null when the window has no trade."""
    high: int | None
    low: int | None
    change: int | None
    """last - open (negative when the price fell)."""
    volume: int
    quote_volume: int
    trades: int
    seq: int
    """TRADES stream sequence of the last event that changed this instrument (as on the live feeds)."""
    ts: int | None
    """Epoch milliseconds of the newest trade."""

    def to_wire(self, wire: str) -> dict[str, Any]:
        """Decimal strings in JSON, integer units in msgpack."""
        spec, w = instrument(self.instrument), Wire(wire)
        return {"instrument": self.instrument, "last": _price(spec, self.last, w), "open": _price(spec, self.open, w),
                "high": _price(spec, self.high, w), "low": _price(spec, self.low, w),
                "change": _price(spec, self.change, w), "volume": _qty(spec, self.volume, w),
                "quote_volume": _price(spec, self.quote_volume, w), "trades": self.trades, "seq": self.seq,
                "ts": self.ts}


class CandlesReply(Message):
    """Candles of one instrument and timeframe, oldest first, with the instrument's `seq`."""

    instrument: str
    tf: Timeframe
    seq: int
    candles: list[Candle]

    def to_wire(self, wire: str) -> dict[str, Any]:
        """Each candle on `wire`."""
        return {"instrument": self.instrument, "tf": self.tf, "seq": self.seq,
                "candles": [c.render(self.instrument, wire) for c in self.candles]}


class TradesReply(Message):
    """The tape of one instrument, newest first, with the instrument's `seq`."""

    instrument: str
    seq: int
    trades: list[TapeTrade]

    def to_wire(self, wire: str) -> dict[str, Any]:
        """Each trade on `wire`."""
        return {"instrument": self.instrument, "seq": self.seq,
                "trades": [t.render(self.instrument, wire) for t in self.trades]}
