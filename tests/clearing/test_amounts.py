"""Property tests of the pure money arithmetic: one hold covers any split, legs conserve, busts invert."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.instruments import INSTRUMENTS
from contracts.matching import Fill, OrderType, Side
from contracts.orders import fill_fees
from nodes.clearing import amounts

SYMBOLS = st.sampled_from(["AAPL", "BTC-USD", "ETH-USD"])


@st.composite
def order_and_fills(draw: st.DrawFn) -> tuple[str, str, int, int, list[tuple[int, int]], bool]:
    """(symbol, side, limit price, qty, [(fill price, fill qty)], cancelled at the end)."""
    symbol = draw(SYMBOLS)
    spec = INSTRUMENTS[symbol]
    side = draw(st.sampled_from(["BUY", "SELL"]))
    price = draw(st.integers(1, 10_000_000)) * spec.tick
    lots = draw(st.integers(spec.min_qty // spec.lot, 10_000))
    qty = lots * spec.lot
    fills, left = [], lots
    for _ in range(draw(st.integers(0, 12))):
        if left == 0:
            break
        take = draw(st.integers(1, left))
        improve = draw(st.integers(0, price // spec.tick - 1)) * spec.tick if side == "BUY" else 0
        fills.append((price - improve, take * spec.lot))
        left -= take
    return symbol, side, price, qty, fills, draw(st.booleans())


def as_fill(symbol: str, side: str, price: int, qty: int, maker_value: int, taker_value: int,
            maker_remaining: int, taker_is_order: bool) -> dict[str, Any]:
    """A fill of our order (taker or maker) against someone else."""
    taker_side = side if taker_is_order else ("SELL" if side == "BUY" else "BUY")
    return {"trade_id": "t", "instrument": symbol, "price": price, "qty": qty,
            "maker_order_id": "m" if taker_is_order else "o", "taker_order_id": "o" if taker_is_order else "t1",
            "maker_account": "mk", "taker_account": "tk", "taker_side": taker_side,
            "maker_remaining": maker_remaining, "maker_executed_value": maker_value,
            "taker_executed_value": taker_value}


@settings(max_examples=300, deadline=None)
@given(order_and_fills(), st.data())
def test_the_hold_covers_every_split_and_releases_converge(case: Any, data: st.DataObject) -> None:
    symbol, side, price, qty, fills, cancelled = case
    spec = INSTRUMENTS[symbol]
    asset, hold = amounts.hold_for(spec, Side(side), OrderType.LIMIT, price, qty, None)
    value, filled, debited, views = 0, 0, 0, []
    views.append(amounts.total_debits(spec, side, price, 0, 0, qty))
    assert views[0] == hold  # a fresh order needs all of its hold
    for fill_price, fill_qty in fills:
        quote = amounts.fill_quote(spec, fill_price, fill_qty)
        value += quote
        filled += fill_qty
        taker = data.draw(st.booleans())
        fill = as_fill(symbol, side, fill_price, fill_qty, value if not taker else 0, value if taker else 0,
                       qty - filled, taker)
        _, buyer_fee, _ = fill_fees(spec, fill)
        debited += quote + buyer_fee if side == "BUY" else fill_qty
        views.append(amounts.total_debits(spec, side, price, value, filled, qty - filled))
        assert debited <= hold
    final = amounts.total_debits(spec, side, price, value, filled, 0 if cancelled else qty - filled)
    views.append(final)
    assert views == sorted(views, reverse=True)  # never grows: any view's release is safe
    if cancelled or filled == qty:
        assert final == debited  # exact once final: nothing stays held
    assert asset == (spec.quote if side == "BUY" else spec.base)


@settings(max_examples=300, deadline=None)
@given(SYMBOLS, st.sampled_from(["BUY", "SELL"]), st.integers(1, 10_000_000), st.integers(1, 10_000),
       st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 100))
def test_settle_legs_conserve_every_asset_and_a_bust_undoes_them(
    symbol: str, taker_side: str, ticks: int, lots: int, maker_before: int, taker_before: int, rem: int
) -> None:
    spec = INSTRUMENTS[symbol]
    price, qty = ticks * spec.tick, lots * spec.lot
    quote = amounts.fill_quote(spec, price, qty)
    fill = Fill.model_validate({
        "trade_id": "t", "instrument": symbol, "price": price, "qty": qty, "maker_order_id": "m",
        "taker_order_id": "o", "maker_account": "mk", "taker_account": "tk", "taker_side": taker_side,
        "maker_remaining": rem * spec.lot, "maker_executed_value": maker_before + quote,
        "taker_executed_value": taker_before + quote})
    net: dict[tuple[str, str], int] = defaultdict(int)
    per_asset: dict[str, int] = defaultdict(int)
    sign = {"debit": -1, "charge": -1, "credit": 1}
    for leg in amounts.settle_legs(spec, fill, "fees"):
        if leg["kind"] == "release":
            assert leg["account"] == "mk" and taker_side == "SELL"  # only a buying maker's hold is trimmed
            continue
        per_asset[leg["asset"]] += sign[leg["kind"]] * leg["amount"]
        net[(leg["account"], leg["asset"])] += sign[leg["kind"]] * leg["amount"]
        assert leg["amount"] > 0
    assert all(total == 0 for total in per_asset.values())  # money moves, never appears
    for leg in amounts.bust_legs(spec, fill, "fees"):
        net[(leg["account"], leg["asset"])] += sign[leg["kind"]] * leg["amount"]
        assert leg["amount"] > 0
    # after a bust, each side has back exactly what left its hold (now available), nothing more or less
    assert all(value == 0 for (account, _), value in net.items() if account == "fees")
    buyer = "tk" if taker_side == "BUY" else "mk"
    seller = "mk" if buyer == "tk" else "tk"
    assert net[(buyer, spec.base)] == 0 and net[(seller, spec.quote)] == 0


@settings(max_examples=300, deadline=None)
@given(SYMBOLS, st.sampled_from(["BUY", "SELL"]), st.integers(1, 10_000_000), st.integers(1, 10_000),
       st.integers(0, 10**9), st.integers(0, 10**9), st.integers(0, 100))
def test_voiding_a_fill_nets_exactly_like_settling_then_busting_it_and_raises_no_total(
    symbol: str, taker_side: str, ticks: int, lots: int, maker_before: int, taker_before: int, rem: int
) -> None:
    spec = INSTRUMENTS[symbol]
    price, qty = ticks * spec.tick, lots * spec.lot
    quote = amounts.fill_quote(spec, price, qty)
    fill = Fill.model_validate({
        "trade_id": "t", "instrument": symbol, "price": price, "qty": qty, "maker_order_id": "m",
        "taker_order_id": "o", "maker_account": "mk", "taker_account": "tk", "taker_side": taker_side,
        "maker_remaining": rem * spec.lot, "maker_executed_value": maker_before + quote,
        "taker_executed_value": taker_before + quote})

    def effect(legs: list[dict[str, Any]]) -> tuple[dict[tuple[str, str, str], int], list[dict[str, Any]]]:
        """Net (account, asset, available|held) moves, and the release legs (their amount is the wallet's)."""
        net: dict[tuple[str, str, str], int] = defaultdict(int)
        for leg in legs:
            if leg["kind"] == "release":
                continue
            bucket = "held" if leg["kind"] == "debit" else "available"
            net[(leg["account"], leg["asset"], bucket)] += (1 if leg["kind"] == "credit" else -1) * leg["amount"]
        return {k: v for k, v in net.items() if v}, [leg for leg in legs if leg["kind"] == "release"]

    settled_then_busted = amounts.settle_legs(spec, fill, "fees") + amounts.bust_legs(spec, fill, "fees")
    voided = amounts.void_legs(spec, fill)
    assert effect(voided) == effect(settled_then_busted)
    running: dict[tuple[str, str], int] = defaultdict(int)
    for leg in voided:  # applied in order, no account's total ever rises above where it started
        if leg["kind"] != "release":
            running[(leg["account"], leg["asset"])] += (1 if leg["kind"] == "credit" else -1) * leg["amount"]
            assert running[(leg["account"], leg["asset"])] <= 0
