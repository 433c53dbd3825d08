"""Orders are bounded by value: price x qty plus its fee (what a BUY holds) may not pass MAX_UNITS."""

from __future__ import annotations

from typing import Any

import pytest

from contracts.clearing import PlaceOrder
from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.instruments import INSTRUMENTS
from contracts.matching import ReplaceOrder, SubmitOrder
from contracts.money import MAX_UNITS
from contracts.wallet import Deposit, Settle

AAPL = INSTRUMENTS["AAPL"]
#: The largest whole-share AAPL quantity whose value plus fee at 1,000.00 USD stays within the maximum.
SHARES = MAX_UNITS * 10_000 // (10_000 + AAPL.fee_bps) // 100_000


def _order(**change: Any) -> dict[str, Any]:
    return {"account": "a", "instrument": "AAPL", "side": "BUY", "price": 100_000, "qty": SHARES * 10_000,
            "order_id": "o1", **change}


@pytest.mark.parametrize("model", [PlaceOrder, SubmitOrder])
def test_an_order_at_the_bound_is_accepted_and_one_lot_more_is_out_of_range(model: type[Any]) -> None:
    body = _order() if model is SubmitOrder else {k: v for k, v in _order().items() if k != "order_id"}
    model.model_validate(body)
    with pytest.raises(QtError) as refused:
        model.model_validate({**body, "qty": body["qty"] + 10_000})
    assert refused.value.code is ErrorCode.AMOUNT_OUT_OF_RANGE


@pytest.mark.parametrize(("body", "wire"), [
    ({"account": "a", "instrument": "AAPL", "side": "SELL", "price": "10000000000000.00", "qty": "1.0000"},
     Wire.JSON),  # the price itself is the maximum: its value plus fee is not
    ({"account": "a", "instrument": "BTC-USD", "side": "BUY", "type": "MARKET", "qty": 1000,
      "max_quote": MAX_UNITS}, Wire.MSGPACK),  # a MARKET BUY holds max_quote plus its fee
    ({"account": "a", "instrument": "AAPL", "side": "BUY", "price": MAX_UNITS + 1, "qty": 100}, Wire.MSGPACK),
    ({"account": "a", "instrument": "AAPL", "side": "BUY", "price": "1.00", "qty": "9" * 30}, Wire.JSON),
])
def test_out_of_range_orders_are_refused_on_both_wires(body: dict[str, Any], wire: Wire) -> None:
    with pytest.raises(QtError) as refused:
        PlaceOrder.model_validate(body, context={"wire": wire})
    assert refused.value.code is ErrorCode.AMOUNT_OUT_OF_RANGE


def test_a_replace_is_bounded_like_an_order() -> None:
    with pytest.raises(QtError) as refused:
        ReplaceOrder.model_validate({"order_id": "o", "account": "a", "instrument": "AAPL", "price": MAX_UNITS,
                                     "qty": 10_000})
    assert refused.value.code is ErrorCode.AMOUNT_OUT_OF_RANGE


@pytest.mark.parametrize("wire", [Wire.JSON, Wire.MSGPACK])
def test_wallet_amounts_past_the_maximum_are_out_of_range(wire: Wire) -> None:
    amount: Any = "10000000000000.01" if wire is Wire.JSON else MAX_UNITS + 1
    for command, body in ((Deposit, {"account": "a", "asset": "USD", "amount": amount, "op_id": "x"}),
                          (Settle, {"op_id": "x", "legs": [{"kind": "credit", "account": "a", "asset": "USD",
                                                            "amount": amount}]})):
        with pytest.raises(QtError) as refused:
            command.model_validate(body, context={"wire": wire})
        assert refused.value.code is ErrorCode.AMOUNT_OUT_OF_RANGE
