"""Clearing messages: the place-order saga's input, its stored record and its reply, and trade events."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar, Final, Literal, TypeVar

from pydantic import ConfigDict, Field, SerializeAsAny, ValidationInfo, WithJsonSchema, model_validator

from contracts.base import Account, Message, dump
from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.instruments import instrument
from contracts.matching import (
    Fill,
    InstrumentMoney,
    OrderResult,
    OrderStatus,
    OrderTerms,
    OrderType,
    Side,
    is_stored,
)
from contracts.money import format_amount
from contracts.orders import ClientFill

#: Saga and order ids: also KV keys and hold ids, so no dots or wildcards.
SAGA_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
SagaId = Annotated[str, Field(pattern=SAGA_ID_PATTERN)]

STEPS: Final = ("reserve_funds", "submit_order", "process_fills", "settle")
#: Compensations, in the order they run (the reverse of the steps they undo).
COMPENSATIONS: Final = ("unsettle", "reverse_fills", "cancel_order", "release_hold")
InjectStep = Literal[
    "reserve_funds", "submit_order", "process_fills", "settle",
    "after:reserve_funds", "after:submit_order", "after:process_fills", "after:settle",
]
#: The error code a saga records when `inject_failure_step` failed it on purpose.
INJECTED: Final = "injected_failure"


class SagaStatus(StrEnum):
    """Where a saga stands; the last three are final."""

    PENDING = "pending"
    IN_PROGRESS = "in_progress"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"


FINAL_STATUSES: Final = frozenset({SagaStatus.COMPLETED, SagaStatus.COMPENSATED, SagaStatus.FAILED})


class StepStatus(StrEnum):
    """Where one step (or compensation) stands."""

    PENDING = "pending"
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"


class PlaceOrder(OrderTerms):
    """A new order through the saga: funds are held, the order matched, both sides settled."""

    saga_id: SagaId | None = None
    """Caller-chosen for idempotency (a retry returns the first saga); drawn by clearing otherwise."""
    inject_failure_step: InjectStep | None = None
    """Fail this step (or right after it committed) on purpose, to exercise the compensations."""

    @model_validator(mode="after")
    def _holdable(self, info: ValidationInfo) -> PlaceOrder:
        if is_stored(info):  # a saga record's request: checked when it was placed
            return self
        if self.type is OrderType.MARKET and self.side is Side.BUY and self.max_quote is None:
            raise QtError(ErrorCode.VALIDATION, "a MARKET BUY needs max_quote: the most quote it may spend")
        spec = instrument(self.instrument)
        if self.price is not None and spec.notional(self.price, self.qty)[0] == 0:
            raise QtError(ErrorCode.INVALID_QTY, "the order is worth less than one unit of the quote asset",
                          {"quote": spec.quote})
        return self


class CancelRequest(Message):
    """Cancel an order and release what is left of its hold; only its owner may."""

    account: Account
    order_id: SagaId
    instrument: str | None = None
    """Needed only for orders placed without a saga (the saga record knows its instrument)."""


class SagaGet(Message):
    """One saga by id (= its order id)."""

    saga_id: SagaId


#: A page cursor: the position (creation ns, saga id) of the last saga of the previous page.
Cursor = Annotated[str, Field(pattern=r"^[0-9]{20}\.[A-Za-z0-9_-]{1,64}$")]


class SagaList(Message):
    """A page of sagas newest first (by creation time), optionally of one status or account."""

    status: Annotated[SagaStatus, Field(strict=False)] | None = None
    account: Account | None = None
    limit: Annotated[int, Field(ge=1, le=500)] = 50
    cursor: Cursor | None = None
    """`next_cursor` of the previous page: this page starts with the sagas created before it."""


class StepResult(Message):
    """What a step or compensation reports once it committed; one subclass per step (`STEP_RESULTS`)."""


class HoldTaken(StepResult):
    """reserve_funds: the hold placed under the order id."""

    hold_id: str
    asset: str
    amount: int


class OrderSubmitted(StepResult):
    """submit_order: the engine's answer in short (the full record is `SagaRecord.order`)."""

    status: Annotated[OrderStatus, Field(strict=False)]
    filled: int
    remaining: int
    fills: int


class FillsSettled(StepResult):
    """process_fills: the trades settled; `hold_kept` is None in records written before it released."""

    settled: list[str]
    hold_kept: int | None = None


class TradesPublished(StepResult):
    """settle: the trades published on TRADES and what stays held behind the order."""

    published: list[str]
    hold_kept: int


class TradesBusted(StepResult):
    """unsettle: the trades a bust was published for."""

    busted: list[str]


class FillsReversed(StepResult):
    """reverse_fills: the fills reversed, and those of them voided (their settlement was refused)."""

    reversed: list[str]
    voided: list[str] = Field(default_factory=list)


class OrderCancelled(StepResult):
    """cancel_order: the order's final engine record (None when the engine never had it)."""

    order: OrderResult | None


class HoldReleased(StepResult):
    """release_hold: what stays held behind the order (its fills' share)."""

    hold_kept: int


#: The result model of each step and compensation, by name.
STEP_RESULTS: Final[dict[str, type[StepResult]]] = {
    "reserve_funds": HoldTaken, "submit_order": OrderSubmitted, "process_fills": FillsSettled,
    "settle": TradesPublished, "unsettle": TradesBusted, "reverse_fills": FillsReversed,
    "cancel_order": OrderCancelled, "release_hold": HoldReleased,
}


R = TypeVar("R", bound=StepResult)
#: How a step result is documented at the edge: an object whose shape depends on the step (the gateway
#: cuts an order record in it down to a summary for clients).
_ANY_OBJECT: Final = {"anyOf": [{"type": "object", "additionalProperties": True}, {"type": "null"}]}


class StepRecord(Message):
    """One step or compensation as it ran: op_id, timestamps, attempts, result or error."""

    model_config = ConfigDict(frozen=False)

    name: str
    op_id: str
    status: Annotated[StepStatus, Field(strict=False)] = StepStatus.PENDING
    started_ns: int | None = None
    ended_ns: int | None = None
    attempts: int = 0
    result: Annotated[SerializeAsAny[StepResult] | None, WithJsonSchema(_ANY_OBJECT), Field(title="Result")] = None
    """The step's own result model (`STEP_RESULTS[name]`); stored as that model's fields."""
    error: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _typed_result(cls, data: Any, info: ValidationInfo) -> Any:
        # A stored result carries no type tag: the step's name says which model it is.
        if isinstance(data, dict) and isinstance(data.get("result"), dict):
            model = STEP_RESULTS.get(data.get("name", ""))
            if model is None:
                raise ValueError(f"no result model for step {data.get('name')!r}")
            return {**data, "result": model.model_validate(data["result"], strict=False, context=info.context)}
        return data


class SagaRecord(Message):
    """The saga as stored in the `sagas` bucket (integer units); mutated only by the pure state machine."""

    model_config = ConfigDict(frozen=False)

    saga_id: str
    order_id: str
    account: str
    instrument: str
    side: Annotated[Side, Field(strict=False)]
    request: PlaceOrder
    """The request as placed, its `saga_id` set."""
    request_hash: str
    hold_asset: str
    hold_amount: int
    status: Annotated[SagaStatus, Field(strict=False)] = SagaStatus.PENDING
    steps: list[StepRecord]
    compensations: list[StepRecord] = Field(default_factory=list)
    order: OrderResult | None = None
    """The engine's answer to submit_order (integer units), fills included."""
    error: dict[str, Any] | None = None
    owner: str = ""
    lease_until_ms: int = 0
    created_ns: int
    updated_ns: int

    def step(self, name: str) -> StepRecord:
        """The forward step or compensation called `name`."""
        for record in (*self.steps, *self.compensations):
            if record.name == name:
                return record
        raise KeyError(name)

    def result(self, name: str, model: type[R]) -> R | None:
        """The result of step or compensation `name` if it is in the record and committed one."""
        for record in (*self.steps, *self.compensations):
            if record.name == name and isinstance(record.result, model):
                return record.result
        return None


class SagaView(Message):
    """What `place_order`, `saga_get` and `saga_list` answer: the saga's outcome and its order as it
    stands (fills the order made as maker since included; busted fills listed in `busts`).

    `filled` counts the fills that stand, `busted_qty` the ones a compensation reversed; an open
    order has `filled + busted_qty + remaining = qty`. `fee` is what the order paid, in `fee_asset`.
    """

    saga_id: str
    order_id: str
    account: str
    instrument: str
    side: str
    status: str
    order_status: str | None
    qty: int = 0
    """The order's quantity as the engine has it now (self-trade prevention may have reduced it)."""
    fills: list[Fill]
    busts: list[str] = Field(default_factory=list)
    """Trade ids of the fills reversed by a saga's compensation (this one's or the counterparty's)."""
    filled: int
    busted_qty: int = 0
    remaining: int
    fee: int = 0
    fee_asset: str
    hold_asset: str
    hold_left: int
    error: dict[str, Any] | None
    steps: list[StepRecord] | None = None
    compensations: list[StepRecord] | None = None

    def to_wire(self, wire: str) -> dict[str, Any]:
        """Quantities in the base asset, the hold and fee in their assets; decimal strings in JSON."""
        body = self.model_dump(mode="python", exclude={"fills"})
        body["fills"] = [dump(f, Wire(wire)) for f in self.fills]
        if Wire(wire) is Wire.JSON:
            spec = instrument(self.instrument)
            for name in ("qty", "filled", "busted_qty", "remaining"):
                body[name] = format_amount(spec.base, getattr(self, name))
            body["fee"] = format_amount(self.fee_asset, self.fee)
            body["hold_left"] = format_amount(self.hold_asset, self.hold_left)
        if self.steps is None:
            body.pop("steps")
            body.pop("compensations")
        return body


class ClientSagaView(SagaView):
    """A saga as its account sees it over HTTP: every fill is the order's own side (`client_fill`)."""

    fills: list[ClientFill]  # type: ignore[assignment]


class SagaPeek(Message):
    """Ask the instance driving a saga for it as it has it (`clearing.owner.<owner>.saga_peek`)."""

    saga_id: SagaId


class SagaPeekReply(Message):
    """The saga as its driver replied with it while its final record is still being written; None when
    the driver has nothing newer than the stored record."""

    record: SagaRecord | None = None


class SagaListReply(Message):
    """A page of sagas, newest first; `next_cursor` asks for the next page (None on the last)."""

    sagas: list[SagaView]
    next_cursor: str | None = None

    def to_wire(self, wire: str) -> dict[str, Any]:
        """Each saga in its own wire shape."""
        return {"sagas": [s.to_wire(wire) for s in self.sagas], "next_cursor": self.next_cursor}


class ClientSagaList(Message):
    """A page of a trader's sagas over HTTP, each as `ClientSagaView`."""

    sagas: list[ClientSagaView]
    next_cursor: str | None = None


class TradeEvent(InstrumentMoney):
    """A settled trade (`kind=trade`, msg-id = trade id) or its reversal (`kind=bust`, msg-id `bust:<id>`)."""

    __price_fields__: ClassVar[tuple[str, ...]] = ("price", "quote", "maker_fee", "taker_fee")
    __zero_ok__: ClassVar[bool] = True

    kind: Literal["trade", "bust"]
    trade_id: str
    instrument: str
    price: int
    qty: int
    quote: int
    maker_fee: int
    taker_fee: int
    maker_order_id: str
    taker_order_id: str
    maker_account: str
    taker_account: str
    taker_side: Annotated[Side, Field(strict=False)]
    saga_id: str
    ts_ns: int
