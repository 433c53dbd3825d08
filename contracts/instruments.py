"""Listed instruments: which assets they trade, and the tick, lot step and minimum they enforce.

Prices are integers in the quote asset's smallest unit per one whole base unit; quantities are
integers in the base asset's smallest unit. So for BTC-USD a price of 6750000 is 67,500.00 USD
and a quantity of 100000000 is 1 BTC.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts.errors import ErrorCode, QtError
from contracts.money import MAX_UNITS, out_of_range, scale_of


@dataclass(frozen=True, slots=True)
class Instrument:
    """One listed market and its trading rules, all in integer units."""

    symbol: str
    base: str
    quote: str
    tick: int
    """Prices must be multiples of this (quote units)."""
    lot: int
    """Quantities must be multiples of this (base units)."""
    min_qty: int
    """Smallest quantity accepted (base units); a multiple of `lot`."""
    reference_price: int
    """Where demo books are seeded (quote units)."""
    fee_bps: int = 5
    """Fee per side in basis points of the trade's quote amount, credited to the venue's fee account."""

    def __post_init__(self) -> None:
        if self.fee_bps < 0 or self.tick <= 0 or self.lot <= 0 or self.min_qty < self.lot or self.min_qty % self.lot:
            raise ValueError(f"bad trading rules for {self.symbol}")

    @property
    def price_scale(self) -> int:
        """Decimal places of a price (the quote asset's scale)."""
        return scale_of(self.quote)

    @property
    def qty_scale(self) -> int:
        """Decimal places of a quantity (the base asset's scale)."""
        return scale_of(self.base)

    def notional(self, price: int, qty: int) -> tuple[int, int]:
        """Quote units of `qty` at `price` as (floor, remainder): exact integer arithmetic."""
        scale: int = 10**self.qty_scale  # an int power of an int (mypy reads `**` as Any)
        return divmod(price * qty, scale)

    def fee(self, quote: int) -> int:
        """The fee one side pays on a quote amount (rounded down)."""
        return quote * self.fee_bps // 10_000

    def check_value(self, quote: int) -> None:
        """Refuse an order whose quote value plus its fee (what a BUY holds) is past `MAX_UNITS`."""
        if quote + self.fee(quote) > MAX_UNITS:
            raise out_of_range(self.quote, "the order's value plus fee", {"instrument": self.symbol})


def _equity(symbol: str, price_cents: int) -> Instrument:
    # tick 0.01 USD, lot 0.01 share (fractional shares), min 0.01 share
    return Instrument(symbol, symbol, "USD", tick=1, lot=100, min_qty=100, reference_price=price_cents)


def _crypto(base: str, price_cents: int, min_qty: int, tick: int = 1) -> Instrument:
    # lot 0.00000001 (one satoshi/unit), exchange-style minimum size
    return Instrument(f"{base}-USD", base, "USD", tick=tick, lot=1, min_qty=min_qty, reference_price=price_cents)


INSTRUMENTS: Final[dict[str, Instrument]] = {
    i.symbol: i
    for i in (
        _equity("AAPL", 18742),
        _equity("MSFT", 41218),
        _equity("NVDA", 82550),
        _crypto("BTC", 6750000, min_qty=1000),  # 0.00001 BTC
        _crypto("ETH", 345000, min_qty=10000, tick=10),  # 0.0001 ETH; tick 0.10 USD (as Kraken quotes BTC)
    )
}


def instrument(symbol: str) -> Instrument:
    """The listed instrument, or `unknown_instrument`."""
    try:
        return INSTRUMENTS[symbol]
    except KeyError:
        raise QtError(ErrorCode.UNKNOWN_INSTRUMENT, f"unknown instrument {symbol!r}",
                      {"instrument": symbol}) from None


def engine_instruments(index: int, engines: int) -> tuple[str, ...]:
    """The instruments engine `index` of `engines` owns: sorted symbols dealt out in turn, so every
    engine gets a share and the split is the same wherever it is computed (`qt up`, the bench)."""
    if engines < 1 or not 0 <= index < engines:
        raise ValueError(f"engine {index} of {engines}")
    return tuple(sorted(INSTRUMENTS)[index::engines])
