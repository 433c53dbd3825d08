"""Fixed-point money: every amount inside the mesh is an int of the asset's smallest unit.

Decimal strings exist only at the edges (JSON, HTTP, CLI); floats never do.
"""

from __future__ import annotations

import re
from typing import Any, Final

from contracts.errors import ErrorCode, QtError

#: Decimal places per asset; the smallest unit is 10**-scale.
ASSET_SCALES: Final[dict[str, int]] = {
    "USD": 2,
    "EUR": 2,
    "GBP": 2,
    "JPY": 0,
    "AAPL": 4,
    "MSFT": 4,
    "NVDA": 4,
    "TSLA": 4,
    "GOOG": 4,
    "SOL": 6,
    "BTC": 8,
    "ETH": 8,
}

MAX_UNITS: Final[int] = 10**15
"""The largest number of smallest units any amount, price, quantity, order value, hold or balance may be.

Every stored integer is at most this, and the wallet keeps each (account, asset) total (available +
held) at most this, so only a deposit or a credit can reach it, and is refused when it would pass it.
Why 10**15: any sum of up to 9,000 such values fits a signed 64-bit integer (SQLite INTEGER, msgpack
int64, 2**63 - 1 ~ 9.2 * 10**18), so `balance + amount`, `value + fee` or a SUM over holds cannot
overflow before it is checked; products (`price x qty`) are computed in Python's unbounded ints and the
order's value they give is itself bounded (`contracts.matching`); and it is below 2**53, so every amount
is exact as a double too (JSON readers, metrics). It is still ten trillion USD in cents, ten million
BTC in satoshis, a billion SOL.
"""

_DECIMAL = re.compile(r"^(0|[1-9][0-9]*)(?:\.([0-9]+))?$")


def scale_of(asset: str) -> int:
    """Return the asset's scale, refusing assets the venue does not list."""
    try:
        return ASSET_SCALES[asset]
    except KeyError:
        raise QtError(ErrorCode.UNKNOWN_ASSET, f"unknown asset {asset!r}", {"asset": asset}) from None


def parse_amount(asset: str, text: object, *, allow_zero: bool = False) -> int:
    """Parse a decimal string such as "10050.00" into smallest units of `asset`.

    Refuses non-strings (JSON numbers, floats, bools), signs, exponents, NaN, blanks, leading
    zeros, more decimals than the asset's scale and zero (unless allowed) with `invalid_amount`, and
    more than `MAX_UNITS` with `amount_out_of_range`.
    """
    scale = scale_of(asset)
    if not isinstance(text, str):
        raise QtError(
            ErrorCode.INVALID_AMOUNT,
            f"amount must be a decimal string such as \"1.00\", not {type(text).__name__}",
            {"asset": asset, "got": repr(text)[:40]},
        )
    match = _DECIMAL.match(text)
    if match is None:
        raise QtError(
            ErrorCode.INVALID_AMOUNT,
            f"amount {text[:40]!r} is not a plain non-negative decimal",
            {"asset": asset},
        )
    whole, frac = match.group(1), match.group(2) or ""
    if len(frac) > scale:
        raise QtError(
            ErrorCode.INVALID_AMOUNT,
            f"amount {text!r} has {len(frac)} decimals; {asset} allows {scale}",
            {"asset": asset, "scale": scale},
        )
    if len(whole) > len(str(MAX_UNITS)):  # out of range whatever the scale; never parse a huge int
        raise out_of_range(asset, "amount")
    units = int(whole) * 10**scale + (int(frac.ljust(scale, "0")) if scale else 0)
    return check_units(asset, units, allow_zero=allow_zero)


def check_units(asset: str, units: object, *, allow_zero: bool = False) -> int:
    """Validate an integer amount in smallest units (the msgpack wire form)."""
    scale_of(asset)
    if type(units) is not int:
        raise QtError(
            ErrorCode.INVALID_AMOUNT,
            f"amount must be an integer of {asset} smallest units, not {type(units).__name__}",
            {"asset": asset},
        )
    if units < 0 or (units == 0 and not allow_zero):
        raise QtError(ErrorCode.INVALID_AMOUNT, "amount must be positive", {"asset": asset})
    if units > MAX_UNITS:
        raise out_of_range(asset, "amount")
    return units


def out_of_range(asset: str, what: str, detail: dict[str, Any] | None = None) -> QtError:
    """The `amount_out_of_range` refusal for `what` (an amount, an order's value, a balance) in `asset`."""
    limit = format_amount(asset, MAX_UNITS)
    return QtError(ErrorCode.AMOUNT_OUT_OF_RANGE, f"{what} exceeds the maximum of {limit} {asset}",
                   {"asset": asset, "max": limit, **(detail or {})})


def format_amount(asset: str, units: int) -> str:
    """Format smallest units as a decimal string with exactly the asset's scale."""
    scale = scale_of(asset)
    sign = "-" if units < 0 else ""
    units = abs(units)
    if scale == 0:
        return f"{sign}{units}"
    whole, frac = divmod(units, 10**scale)
    return f"{sign}{whole}.{frac:0{scale}d}"
