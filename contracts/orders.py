"""What an order's owner sees of it: its own side of every fill (fee, liquidity role, bust), and the
fee arithmetic clearing charges with, so the edge shows exactly what the wallet moved.

A fill as the engine reports it names both orders and both accounts; a client gets `client_fill`,
which keeps only the side of the order it asked about. Ops views keep the full `Fill`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final

from pydantic import Field

from contracts.instruments import Instrument, instrument
from contracts.matching import Fill, InstrumentMoney, OrderResult, OrderStatus, Side

#: Display status of a closed order one of whose fills was reversed by a saga's compensation.
BUSTED: Final = "busted"
OPEN: Final = frozenset({OrderStatus.NEW, OrderStatus.PARTIALLY_FILLED})


class Liquidity(StrEnum):
    """Whether the order rested on the book (maker) or took from it (taker) in a fill."""

    MAKER = "maker"
    TAKER = "taker"


def fee(spec: Instrument, quote: int) -> int:
    """The fee on a quote amount (rounded down)."""
    return spec.fee(quote)


def fill_fees(spec: Instrument, fill: Fill | Mapping[str, Any]) -> tuple[int, int, int]:
    """(quote amount, buyer's fee, seller's fee) of one fill, from each side's executed value: a fill
    pays `fee(value after) - fee(value before)`, so an order pays `fee(executed value)` however split."""
    if isinstance(fill, Fill):
        price, qty, taker_side = fill.price, fill.qty, fill.taker_side
        maker_value, taker_value = fill.maker_executed_value, fill.taker_executed_value
    else:  # an EXEC report or a wire body (integer units)
        price, qty, taker_side = int(fill["price"]), int(fill["qty"]), fill["taker_side"]
        maker_value, taker_value = int(fill["maker_executed_value"]), int(fill["taker_executed_value"])
    quote = spec.notional(price, qty)[0]
    taker_buys = taker_side == Side.BUY
    buyer_value = taker_value if taker_buys else maker_value
    seller_value = maker_value if taker_buys else taker_value
    return quote, _fee_step(spec, buyer_value, quote), _fee_step(spec, seller_value, quote)


def _fee_step(spec: Instrument, value_after: int, quote: int) -> int:
    return fee(spec, value_after) - fee(spec, value_after - quote)


class ClientFill(InstrumentMoney):
    """One fill as the owner of `order_id` sees it: never the counterparty's account, order or rest."""

    __price_fields__: ClassVar[tuple[str, ...]] = ("price", "fee")
    __zero_ok__: ClassVar[bool] = True

    trade_id: str
    instrument: str
    order_id: str
    side: Annotated[Side, Field(strict=False)]
    liquidity: Annotated[Liquidity, Field(strict=False)]
    price: int
    qty: int
    fee: int
    """What this order paid the venue for this fill, in `fee_asset` (the quote asset)."""
    fee_asset: str
    busted: bool = False
    """Reversed by a saga's compensation: the trade no longer stands and its fee was refunded."""


def client_fill(fill: Fill | Mapping[str, Any], order_id: str, *, busted: bool = False) -> ClientFill:
    """The side of `fill` that belongs to order `order_id` (integer units in, integer units out)."""
    if isinstance(fill, Fill):
        trade_id, symbol = fill.trade_id, fill.instrument
        taker_order, maker_order = fill.taker_order_id, fill.maker_order_id
        price, qty, taker_side = fill.price, fill.qty, fill.taker_side
    else:  # an EXEC report or a wire body: read as it is, the gateway's hot path
        trade_id, symbol = str(fill["trade_id"]), str(fill["instrument"])
        taker_order, maker_order = fill["taker_order_id"], fill["maker_order_id"]
        price, qty, taker_side = int(fill["price"]), int(fill["qty"]), Side(fill["taker_side"])
    spec = instrument(symbol)
    taker = taker_order == order_id
    if not taker and maker_order != order_id:
        raise ValueError(f"fill {trade_id} is not order {order_id}'s")
    _, buyer_fee, seller_fee = fill_fees(spec, fill)
    side = taker_side if taker else (Side.SELL if taker_side is Side.BUY else Side.BUY)
    return ClientFill(
        trade_id=trade_id, instrument=spec.symbol, order_id=order_id, side=side,
        liquidity=Liquidity.TAKER if taker else Liquidity.MAKER, price=price, qty=qty,
        fee=buyer_fee if side is Side.BUY else seller_fee, fee_asset=spec.quote, busted=busted,
    )


class ClientOrderResult(OrderResult):
    """An engine order record (a cancel's answer) as its owner sees it: its own side of each fill."""

    fills: list[ClientFill] = Field(default_factory=list)  # type: ignore[assignment]


def order_totals(fills: Iterable[ClientFill]) -> tuple[int, int, int]:
    """(filled, busted quantity, fee) of an order's fills: what stands, what was reversed, what it paid."""
    filled = busted = paid = 0
    for fill in fills:
        if fill.busted:
            busted += fill.qty
        else:
            filled += fill.qty
            paid += fill.fee
    return filled, busted, paid


def display_status(status: str, filled: int, busted: int) -> str:
    """The order's status with busts taken into account: an open order is `new` or `partially_filled`
    by what stands; a closed order with a busted fill says `busted` (its `filled` is what stands)."""
    if not busted:
        return status
    if status in OPEN:
        return OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW
    return BUSTED
