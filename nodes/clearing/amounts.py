"""The money arithmetic of clearing, pure and in integer units: holds, fees, fill legs and busts.

A trade's quote amount rounds down. Fees are charged in the quote asset on each side's
*executed value* (the sum of its fills' quote amounts, which the engine reports with every fill):
a fill pays `fee(value after) - fee(value before)`, so an order pays exactly `fee(executed value)`
however it is split, and its hold (`floor(price x qty)` plus the fee on that) is always enough.

`total_debits` is everything an order's hold will ever pay out, as far as one view of the order
tells. It never grows as the order fills or shrinks, so releasing a hold down to it is safe from
any view, in any order, and exact once the order is final.
"""

from __future__ import annotations

from typing import Any

from contracts.instruments import Instrument
from contracts.matching import Fill, OrderResult, OrderType, Side
from contracts.orders import fee, fill_fees


def fill_quote(spec: Instrument, price: int, qty: int) -> int:
    """Quote units that change hands for `qty` at `price` (rounded down, as the engine does)."""
    return spec.notional(price, qty)[0]


def hold_for(spec: Instrument, side: Side, type_: OrderType, price: int | None, qty: int,
             max_quote: int | None) -> tuple[str, int]:
    """(asset, amount) an order must hold: quote plus its fee for a BUY, base for a SELL."""
    if side is Side.SELL:
        return spec.base, qty
    quote = max_quote if type_ is OrderType.MARKET else fill_quote(spec, price or 0, qty)
    assert quote is not None
    return spec.quote, quote + fee(spec, quote)


def total_debits(spec: Instrument, side: str, price: int | None, executed_value: int, filled: int,
                 remaining: int) -> int:
    """What the order's hold pays out over its life: its fills so far and, at most, its open rest."""
    if side == Side.SELL:
        return filled + remaining
    bound = executed_value + (fill_quote(spec, price or 0, remaining) if remaining > 0 else 0)
    return bound + fee(spec, bound)


def of_order(spec: Instrument, order: OrderResult) -> int:
    """`total_debits` of an engine order record (`matching.order`, a submit or cancel result)."""
    return total_debits(spec, order.side, order.price, order.executed_value, order.filled, order.remaining)


def hold_left(spec: Instrument, order: OrderResult) -> int:
    """What stays held behind an order once everything so far is settled: what its open rest needs."""
    value = order.executed_value
    paid = order.filled if order.side is Side.SELL else value + fee(spec, value)
    return of_order(spec, order) - paid


def _parties(fill: Fill) -> tuple[tuple[str, str], tuple[str, str]]:
    """((buyer account, buyer order), (seller account, seller order))."""
    taker = (fill.taker_account, fill.taker_order_id)
    maker = (fill.maker_account, fill.maker_order_id)
    return (taker, maker) if fill.taker_side is Side.BUY else (maker, taker)


def settle_legs(spec: Instrument, fill: Fill, fee_account: str) -> list[dict[str, Any]]:
    """One fill, atomically: the buyer's quote and the seller's base leave their order holds, each
    side is credited what it bought (the seller less its fee), the venue gets both fees, and a
    buying maker's hold is brought down to what its rest still needs. Every asset sums to zero."""
    (buyer, buy_order), (seller, sell_order) = _parties(fill)
    quote, buyer_fee, seller_fee = fill_fees(spec, fill)
    qty = fill.qty
    legs = _nonzero([
        {"kind": "debit", "account": buyer, "asset": spec.quote, "amount": quote + buyer_fee, "hold_id": buy_order},
        {"kind": "credit", "account": buyer, "asset": spec.base, "amount": qty},
        {"kind": "debit", "account": seller, "asset": spec.base, "amount": qty, "hold_id": sell_order},
        {"kind": "credit", "account": seller, "asset": spec.quote, "amount": quote - seller_fee},
        {"kind": "credit", "account": fee_account, "asset": spec.quote, "amount": buyer_fee + seller_fee},
    ])
    return legs + _maker_trim(spec, fill)


def _maker_trim(spec: Instrument, fill: Fill) -> list[dict[str, Any]]:
    """When the maker buys, its price rounding and fee headroom shrink: release its hold down to its rest."""
    if fill.taker_side is not Side.SELL:
        return []
    keep = total_debits(spec, Side.BUY, fill.price, fill.maker_executed_value, 0, fill.maker_remaining)
    return [{"kind": "release", "account": fill.maker_account, "asset": spec.quote,
             "hold_id": fill.maker_order_id, "total_debits": keep}]


def bust_legs(spec: Instrument, fill: Fill, fee_account: str) -> list[dict[str, Any]]:
    """The exact reversal of a fill's settlement into available balances: what each side paid out of
    its hold comes back as available (the hold for the busted quantity is released), what it
    received is charged back."""
    (buyer, _), (seller, _) = _parties(fill)
    quote, buyer_fee, seller_fee = fill_fees(spec, fill)
    qty = fill.qty
    return _nonzero([
        {"kind": "charge", "account": buyer, "asset": spec.base, "amount": qty},
        {"kind": "credit", "account": buyer, "asset": spec.quote, "amount": quote + buyer_fee},
        {"kind": "credit", "account": seller, "asset": spec.base, "amount": qty},
        {"kind": "charge", "account": seller, "asset": spec.quote, "amount": quote - seller_fee},
        {"kind": "charge", "account": fee_account, "asset": spec.quote, "amount": buyer_fee + seller_fee},
    ])


def void_legs(spec: Instrument, fill: Fill) -> list[dict[str, Any]]:
    """The bust of a fill whose settlement was refused (e.g. a credit past the maximum balance):
    nothing changes hands; what each side's hold would have paid for it returns to its own available
    balance. Its net effect is exactly `settle_legs` followed by `bust_legs`, and it raises no
    account's total, so it cannot be refused the way the settlement was."""
    (buyer, buy_order), (seller, sell_order) = _parties(fill)
    quote, buyer_fee, _ = fill_fees(spec, fill)
    qty = fill.qty
    return _nonzero([
        {"kind": "debit", "account": buyer, "asset": spec.quote, "amount": quote + buyer_fee, "hold_id": buy_order},
        {"kind": "credit", "account": buyer, "asset": spec.quote, "amount": quote + buyer_fee},
        {"kind": "debit", "account": seller, "asset": spec.base, "amount": qty, "hold_id": sell_order},
        {"kind": "credit", "account": seller, "asset": spec.base, "amount": qty},
    ]) + _maker_trim(spec, fill)


def _nonzero(legs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # a tiny fill can round to no quote at all (e.g. one satoshi): such legs move nothing
    return [leg for leg in legs if leg["amount"] > 0]
