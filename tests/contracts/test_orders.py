"""The client's view of a fill: its own side only, the fee it paid, and busts taken out of the totals."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.instruments import instrument
from contracts.orders import client_fill, display_status, fee, order_totals


def fill(trade: int, qty: int, price: int, maker_value: int, taker_value: int) -> dict[str, Any]:
    """A NVDA fill: bob's resting SELL `m`, alice's BUY `t` taking it."""
    return {"trade_id": f"NVDA-{trade}", "instrument": "NVDA", "price": price, "qty": qty,
            "maker_order_id": "m", "taker_order_id": "t", "maker_account": "bob", "taker_account": "alice",
            "taker_side": "BUY", "maker_remaining": 0, "maker_executed_value": maker_value,
            "taker_executed_value": taker_value}


def test_each_side_gets_its_own_order_role_side_and_fee() -> None:
    one = fill(1, 10_000, 82_550, 82_550, 82_550)
    taker, maker = client_fill(one, "t"), client_fill(one, "m")
    assert (taker.order_id, taker.liquidity, taker.side, taker.fee) == ("t", "taker", "BUY", 41)
    assert (maker.order_id, maker.liquidity, maker.side, maker.fee) == ("m", "maker", "SELL", 41)
    assert "bob" not in taker.model_dump_json() and "alice" not in maker.model_dump_json()
    with pytest.raises(ValueError):
        client_fill(one, "someone-else")


def test_an_orders_fees_add_up_to_the_fee_on_its_executed_value_less_its_busts() -> None:
    spec = instrument("NVDA")
    fills = [fill(1, 10_000, 82_550, 82_550, 82_550), fill(2, 10_000, 82_600, 82_600, 165_150)]
    mine = [client_fill(f, "t") for f in fills]
    assert order_totals(mine) == (20_000, 0, fee(spec, 165_150))
    busted = [client_fill(fills[0], "t", busted=True), mine[1]]
    assert order_totals(busted) == (10_000, 10_000, mine[1].fee)


@pytest.mark.parametrize(("status", "filled", "busted", "shown"), [
    ("filled", 10, 0, "filled"),
    ("partially_filled", 0, 5, "new"),
    ("partially_filled", 3, 5, "partially_filled"),
    ("filled", 0, 10, "busted"),
    ("cancelled", 4, 6, "busted"),
])
def test_status_reflects_busts(status: str, filled: int, busted: int, shown: str) -> None:
    assert display_status(status, filled, busted) == shown
