"""The money arithmetic of clearing, pure and in integer units: holds, fees, fill legs and busts.

Every amount rounds down (the trade's quote amount and each fee), which is what makes one hold
enough for any sequence of partial fills at the order's price or better: the sum of the rounded
parts never exceeds the rounded whole. Fees are charged in the quote asset on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from contracts.instruments import Instrument
from contracts.matching import OrderType, Side


def fee(spec: Instrument, quote: int) -> int:
    """One side's fee on a quote amount (rounded down)."""
    return quote * spec.fee_bps // 10_000


def fill_quote(spec: Instrument, price: int, qty: int) -> int:
    """Quote units that change hands for `qty` at `price` (rounded down)."""
    return spec.notional(price, qty)[0]


def hold_for(spec: Instrument, side: Side, type_: OrderType, price: int | None, qty: int,
             max_quote: int | None) -> tuple[str, int]:
    """(asset, amount) an order must hold: quote plus fee headroom for a BUY, base for a SELL."""
    if side is Side.SELL:
        return spec.base, qty
    quote = max_quote if type_ is OrderType.MARKET else fill_quote(spec, price or 0, qty)
    assert quote is not None
    return spec.quote, quote + fee(spec, quote)


def debit_of(spec: Instrument, side: str, fill: dict[str, Any]) -> int:
    """What one fill takes out of the hold of the order on `side`."""
    if side == Side.SELL:
        return int(fill["qty"])
    quote = fill_quote(spec, fill["price"], fill["qty"])
    return quote + fee(spec, quote)


def needed(spec: Instrument, side: str, price: int | None, remaining: int) -> int:
    """What a resting remainder must keep held: enough for it to fill completely at its price."""
    if remaining <= 0:
        return 0
    if side == Side.SELL:
        return remaining
    quote = fill_quote(spec, price or 0, remaining)
    return quote + fee(spec, quote)


def total_debits(spec: Instrument, side: str, price: int | None, fills: Iterable[dict[str, Any]],
                 remaining: int) -> int:
    """Everything an order's hold will ever pay out, as known from one view of the order.

    Never grows as the order fills or shrinks (a fill at the order's price or better costs at most
    what its quantity kept held), so a release down to it is safe from any view, in any order.
    """
    return sum(debit_of(spec, side, f) for f in fills) + needed(spec, side, price, remaining)


def _parties(fill: dict[str, Any]) -> tuple[tuple[str, str], tuple[str, str]]:
    """((buyer account, buyer order), (seller account, seller order))."""
    taker = (fill["taker_account"], fill["taker_order_id"])
    maker = (fill["maker_account"], fill["maker_order_id"])
    return (taker, maker) if fill["taker_side"] == Side.BUY else (maker, taker)


def fees_of(spec: Instrument, fill: dict[str, Any]) -> tuple[int, int, int]:
    """(quote amount, buyer's fee, seller's fee) of a fill."""
    quote = fill_quote(spec, fill["price"], fill["qty"])
    return quote, fee(spec, quote), fee(spec, quote)


def settle_legs(spec: Instrument, fill: dict[str, Any], fee_account: str) -> list[dict[str, Any]]:
    """The legs of one fill: buyer's quote and seller's base leave their order holds, each side is
    credited what it bought (less its fee), and the venue the fees: every asset sums to zero."""
    (buyer, buy_order), (seller, sell_order) = _parties(fill)
    quote, buyer_fee, seller_fee = fees_of(spec, fill)
    qty = int(fill["qty"])
    legs = [
        {"kind": "debit", "account": buyer, "asset": spec.quote, "amount": quote + buyer_fee, "hold_id": buy_order},
        {"kind": "credit", "account": buyer, "asset": spec.base, "amount": qty},
        {"kind": "debit", "account": seller, "asset": spec.base, "amount": qty, "hold_id": sell_order},
    ]
    if quote - seller_fee > 0:
        legs.append({"kind": "credit", "account": seller, "asset": spec.quote, "amount": quote - seller_fee})
    if buyer_fee + seller_fee > 0:
        legs.append({"kind": "credit", "account": fee_account, "asset": spec.quote,
                     "amount": buyer_fee + seller_fee})
    return legs


def bust_legs(spec: Instrument, fill: dict[str, Any], fee_account: str) -> list[dict[str, Any]]:
    """The exact reversal of `settle_legs` into available balances: what each side paid out of its
    hold comes back as available (the hold for the busted quantity is released), what it received
    is charged back."""
    (buyer, _), (seller, _) = _parties(fill)
    quote, buyer_fee, seller_fee = fees_of(spec, fill)
    qty = int(fill["qty"])
    legs = [
        {"kind": "charge", "account": buyer, "asset": spec.base, "amount": qty},
        {"kind": "credit", "account": buyer, "asset": spec.quote, "amount": quote + buyer_fee},
        {"kind": "charge", "account": seller, "asset": spec.quote, "amount": quote - seller_fee},
        {"kind": "credit", "account": seller, "asset": spec.base, "amount": qty},
    ]
    if quote - seller_fee <= 0:
        legs.pop(2)
    if buyer_fee + seller_fee > 0:
        legs.append({"kind": "charge", "account": fee_account, "asset": spec.quote,
                     "amount": buyer_fee + seller_fee})
    return legs
