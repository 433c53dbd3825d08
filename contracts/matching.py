"""Matching messages: order commands, journal entries, execution reports and book views."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal

import msgpack
from pydantic import Field, ValidationInfo, model_validator

from contracts.base import Account, Message, MoneyMessage, OpId, dump
from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.instruments import Instrument, instrument
from contracts.money import format_amount


class Side(StrEnum):
    """Which side of the book an order is on."""

    BUY = "BUY"
    SELL = "SELL"


class OrderType(StrEnum):
    """LIMIT rests at its price; MARKET takes what is there and never rests."""

    LIMIT = "LIMIT"
    MARKET = "MARKET"


class TimeInForce(StrEnum):
    """GTC rests; IOC cancels what does not fill at once; FOK fills entirely at once or not at all."""

    GTC = "GTC"
    IOC = "IOC"
    FOK = "FOK"


class Stp(StrEnum):
    """Self-trade prevention, the taker's choice (Coinbase's `stp` values)."""

    DECREASE_AND_CANCEL = "dc"
    CANCEL_OLDEST = "co"
    CANCEL_NEWEST = "cn"
    CANCEL_BOTH = "cb"


class OrderStatus(StrEnum):
    """Where an order stands after a command."""

    NEW = "new"
    PARTIALLY_FILLED = "partially_filled"
    FILLED = "filled"
    CANCELLED = "cancelled"
    REJECTED = "rejected"


Lenient = Field(strict=False)  # enums arrive as strings on both wires


class InstrumentMoney(MoneyMessage):
    """Prices (and quote amounts) in the instrument's quote scale, quantities in its base scale."""

    __money_fields__: ClassVar[tuple[str, ...]] = ()
    __price_fields__: ClassVar[tuple[str, ...]] = ("price",)
    __qty_fields__: ClassVar[tuple[str, ...]] = ("qty",)

    @classmethod
    def _assets_of(cls, data: dict[str, Any]) -> dict[str, str]:
        symbol = data.get("instrument")
        if not isinstance(symbol, str):
            return {}
        spec = instrument(symbol)
        out = dict.fromkeys(cls.__price_fields__, spec.quote)
        out.update(dict.fromkeys(cls.__qty_fields__, spec.base))
        return out


#: Validation context key of a record read back from storage: its terms were checked when it was made,
#: and a rule changed since (a tick, a lot step) must not make the stored record unreadable.
STORED: Final = "stored"


def is_stored(info: ValidationInfo) -> bool:
    """Whether this validation reads a stored record back (context `{STORED: True}`)."""
    return isinstance(info.context, dict) and bool(info.context.get(STORED))


def check_tick(spec: Instrument, price: int) -> None:
    """Refuse a price off the instrument's tick with `price_off_tick`, the tick as a decimal string."""
    if price % spec.tick:
        tick = format_amount(spec.quote, spec.tick)
        raise QtError(ErrorCode.PRICE_OFF_TICK, f"price must be a multiple of the tick {tick}", {"tick": tick})


def check_size(spec: Instrument, qty: int) -> None:
    """Refuse a quantity off the lot step or below the minimum, both as decimal strings."""
    if qty % spec.lot:
        lot = format_amount(spec.base, spec.lot)
        raise QtError(ErrorCode.QTY_OFF_STEP, f"qty must be a multiple of the lot step {lot}", {"lot": lot})
    if qty < spec.min_qty:
        least = format_amount(spec.base, spec.min_qty)
        raise QtError(ErrorCode.QTY_BELOW_MIN, f"qty is below the minimum {least}", {"min_qty": least})


class OrderTerms(InstrumentMoney):
    """What an order asks for, checked against the instrument's rules; shared by matching and clearing."""

    __price_fields__: ClassVar[tuple[str, ...]] = ("price", "max_quote")

    account: Account
    instrument: str
    side: Annotated[Side, Lenient]
    type: Annotated[OrderType, Lenient] = OrderType.LIMIT
    tif: Annotated[TimeInForce, Lenient] = TimeInForce.GTC
    price: int | None = None
    qty: int
    post_only: bool = False
    stp: Annotated[Stp, Lenient] = Stp.DECREASE_AND_CANCEL
    client_order_id: Annotated[str, Field(max_length=64)] | None = None
    max_quote: int | None = None
    """MARKET BUY only: the most quote currency the order may spend (what clearing holds)."""

    @model_validator(mode="after")
    def _shape(self, info: ValidationInfo) -> OrderTerms:
        if is_stored(info):
            return self
        spec = instrument(self.instrument)
        if self.type is OrderType.MARKET and self.price is not None:
            raise QtError(ErrorCode.MARKET_WITH_PRICE, "a MARKET order takes no price")
        if self.type is OrderType.LIMIT and self.price is None:
            raise QtError(ErrorCode.INVALID_PRICE, "a LIMIT order needs a price")
        if self.price is not None:
            check_tick(spec, self.price)
        check_size(spec, self.qty)
        if self.max_quote is not None and not (self.type is OrderType.MARKET and self.side is Side.BUY):
            raise QtError(ErrorCode.VALIDATION, "max_quote is only for MARKET BUY orders")
        if self.price is not None:
            spec.check_value(spec.notional(self.price, self.qty)[0])
        if self.max_quote is not None:
            spec.check_value(self.max_quote)
        return self


class SubmitOrder(OrderTerms):
    """A new order. `order_id` is chosen by the caller (the saga uses it as the hold id)."""

    order_id: OpId


class CancelOrder(Message):
    """Cancel a resting order; only its owner may."""

    order_id: OpId
    account: Account
    instrument: str


class ReplaceOrder(InstrumentMoney):
    """Cancel-replace: new price and size, keeping time priority only when the size shrinks."""

    order_id: OpId
    account: Account
    instrument: str
    price: int
    qty: int

    @model_validator(mode="after")
    def _rules(self) -> ReplaceOrder:
        # The book would refuse these too, but only by code; this says which tick or step, as a decimal.
        spec = instrument(self.instrument)
        check_tick(spec, self.price)
        check_size(spec, self.qty)
        spec.check_value(spec.notional(self.price, self.qty)[0])
        return self


class OrderQuery(Message):
    """The state of one order."""

    instrument: str
    order_id: OpId


class BookQuery(Message):
    """L2 depth of one instrument."""

    instrument: str
    depth: Annotated[int, Field(ge=1, le=500)] = 10


class StatusQuery(Message):
    """Engine status, for one instrument or all."""

    instrument: str | None = None


class Fill(InstrumentMoney):
    """One trade: at the maker's price; `maker_remaining` is what the maker had left open after it."""

    __qty_fields__: ClassVar[tuple[str, ...]] = ("qty", "maker_remaining")
    __price_fields__: ClassVar[tuple[str, ...]] = ("price", "maker_executed_value", "taker_executed_value")
    __zero_ok__: ClassVar[bool] = True

    trade_id: str
    instrument: str
    price: int
    qty: int
    maker_order_id: str
    taker_order_id: str
    maker_account: str
    taker_account: str
    taker_side: Annotated[Side, Lenient]
    maker_remaining: int
    maker_executed_value: int
    """The maker order's executed value (quote units) including this fill; the taker's likewise."""
    taker_executed_value: int


class OrderResult(InstrumentMoney):
    """What the engine did with a command: the order's state and the fills it produced now."""

    __qty_fields__: ClassVar[tuple[str, ...]] = ("qty", "filled", "remaining")
    __price_fields__: ClassVar[tuple[str, ...]] = ("price", "executed_value")
    __zero_ok__: ClassVar[bool] = True

    order_id: str
    instrument: str
    account: str
    side: Annotated[Side, Lenient]
    status: Annotated[OrderStatus, Lenient]
    price: int | None
    qty: int
    filled: int
    executed_value: int
    """Quote units of all fills so far, each rounded down."""
    remaining: int
    reason: str | None = None
    fills: list[Fill] = Field(default_factory=list)
    journal_seq: int


class OrderResultView:
    """An engine's `OrderResult` body (integer units) rendered for a wire without validating it again.

    The engine builds the body in exactly the contract's shape and field order, so msgpack sends it as
    it is (the hot path: one per submit); JSON goes through `OrderResult` for its decimal strings.
    """

    __slots__ = ("body",)

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body

    def to_wire(self, wire: str) -> dict[str, Any]:
        """The body as-is in msgpack, `OrderResult`'s decimal strings in JSON."""
        if Wire(wire) is Wire.JSON:
            return dump(OrderResult.model_validate(self.body), Wire.JSON)
        return self.body


def exec_reports(data: bytes) -> list[dict[str, Any]]:
    """The execution reports of one EXEC message, in order: a list per journal entry (or, in a stream
    written before entries were one message, a single report)."""
    body = msgpack.unpackb(data, raw=False)
    return body if isinstance(body, list) else [body]


class BookView(Message):
    """L2 depth: `bids`/`asks` best first as `[price, qty]` pairs, with sequence and checksum."""

    instrument: str
    seq: int
    checksum: int
    bids: list[tuple[int, int]]
    asks: list[tuple[int, int]]

    def to_wire(self, wire: str) -> dict[str, Any]:
        """Decimal-string pairs in JSON, integer pairs in msgpack."""
        spec = instrument(self.instrument)

        def side(levels: list[tuple[int, int]]) -> list[list[Any]]:
            if Wire(wire) is Wire.JSON:
                return [[format_amount(spec.quote, p), format_amount(spec.base, q)] for p, q in levels]
            return [[p, q] for p, q in levels]

        return {"instrument": self.instrument, "seq": self.seq, "checksum": self.checksum,
                "bids": side(self.bids), "asks": side(self.asks)}


class InstrumentStatus(Message):
    """One instrument as the engine sees it."""

    instrument: str
    owner: str
    lease_token: int
    applied_seq: int
    exec_published_seq: int
    """Execution reports are in EXEC up to this journal sequence (trails `applied_seq` briefly)."""
    resting_orders: int
    last_snapshot_seq: int
    applied_commands: int = 0
    """Distinct commands applied: a batch entry holds many, so this exceeds `applied_seq`'s entry count."""


class StatusReply(Message):
    """Engine status per instrument."""

    instruments: list[InstrumentStatus]
    book: Literal["compiled", "python"]
    """Which build of the order book the engine runs: mypyc-compiled, or the same source as Python."""
