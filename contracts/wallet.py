"""Wallet messages: commands, events and replies of the `wallet` micro service."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, ClassVar

from pydantic import Field, field_validator, model_validator

from contracts.base import Account, Asset, Message, MoneyMessage, OpId, Seq, dump
from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.money import scale_of


class _AssetChecked(MoneyMessage):
    asset: Asset

    @field_validator("asset")
    @classmethod
    def _known(cls, asset: str) -> str:
        scale_of(asset)
        return asset


class Deposit(_AssetChecked):
    """Add money to an account's available balance."""

    account: Account
    amount: int
    op_id: OpId


class Withdraw(Deposit):
    """Take money out of an account's available balance."""


class Credit(Deposit):
    """Add money to an account's available balance as the result of a trade or fee."""


class Hold(_AssetChecked):
    """Move available money into a named hold (e.g. behind an order)."""

    account: Account
    amount: int
    hold_id: OpId
    op_id: OpId


class Release(_AssetChecked):
    """Return held money to available: `amount`, or down to `total_debits`, or (neither) all of it.

    `total_debits` is every debit the hold will ever pay as far as the caller knows (settled or
    not, e.g. an order's fills); the wallet releases the rest, never less than it released before,
    so releases computed from any snapshot of an order, in any order, converge on the same total.
    """

    __money_fields__: ClassVar[tuple[str, ...]] = ("amount", "total_debits")
    __zero_ok__: ClassVar[bool] = True

    account: Account
    hold_id: OpId
    op_id: OpId
    amount: int | None = None
    total_debits: int | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Release:
        _check_release(self.amount, self.total_debits)
        return self


def _check_release(amount: int | None, total_debits: int | None) -> None:
    if amount is not None and total_debits is not None:
        raise QtError(ErrorCode.VALIDATION, "give amount or total_debits, not both")
    if amount == 0:
        raise QtError(ErrorCode.INVALID_AMOUNT, "amount must be positive")


class Debit(Hold):
    """Take money out of a hold (it leaves the account)."""


class LegKind(StrEnum):
    """What one leg of a settlement does."""

    DEBIT = "debit"
    CREDIT = "credit"
    RELEASE = "release"
    CHARGE = "charge"  # take from available (a trade bust charges back what a fill credited)


class Leg(_AssetChecked):
    """One movement inside an atomic settlement; a release leg takes `total_debits` like `Release`."""

    __money_fields__: ClassVar[tuple[str, ...]] = ("amount", "total_debits")
    __zero_ok__: ClassVar[bool] = True

    kind: Annotated[LegKind, Field(strict=False)]  # enums arrive as strings on both wires
    account: Account
    amount: int | None = None
    hold_id: OpId | None = None
    total_debits: int | None = None

    @model_validator(mode="after")
    def _one_way(self) -> Leg:
        _check_release(self.amount, self.total_debits)
        if self.total_debits is not None and self.kind is not LegKind.RELEASE:
            raise QtError(ErrorCode.VALIDATION, "total_debits is only for release legs")
        return self


class Settle(Message):
    """Several legs applied atomically: all or none."""

    op_id: OpId
    legs: Annotated[list[Leg], Field(min_length=1, max_length=64)]


class BalanceQuery(Message):
    """Ask for every balance of an account."""

    account: Account


class EventsQuery(Message):
    """Page through an account's events: oldest first from `after` (the last `seq` already seen), or
    with `newest_first` down from `before` (the first page starts at the newest event)."""

    account: Account
    asset: Asset | None = None
    after: Seq = 0
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    newest_first: bool = False
    before: Annotated[Seq, Field(ge=1)] | None = None
    """Only with `newest_first`: the last (smallest) `seq` already seen."""

    @model_validator(mode="after")
    def _one_direction(self) -> EventsQuery:
        if self.newest_first and self.after:
            raise QtError(ErrorCode.VALIDATION, "after pages oldest first; with newest_first use before")
        if self.before is not None and not self.newest_first:
            raise QtError(ErrorCode.VALIDATION, "before pages newest first: set newest_first")
        return self


class RebuildCommand(Message):
    """Recompute projections from the latest snapshots plus later events; all accounts if none."""

    account: Account | None = None


class VerifyCommand(Message):
    """Check the hash chain and every snapshot from genesis; all accounts if none."""

    account: Account | None = None


class EventType(StrEnum):
    """What happened to one (account, asset)."""

    DEPOSITED = "deposited"
    WITHDRAWN = "withdrawn"
    HELD = "held"
    RELEASED = "released"
    DEBITED = "debited"
    CREDITED = "credited"
    CHARGED = "charged"


class WalletEvent(MoneyMessage):
    """An appended, hash-chained event; `seq` orders a partition, `version` an (account, asset)."""

    seq: int
    event_id: str
    account: str
    asset: str
    version: int
    type: Annotated[EventType, Field(strict=False)]
    amount: int
    hold_id: str | None
    op_id: str
    ts_ns: int
    prev_hash: str
    hash: str


class BalanceState(MoneyMessage):
    """One (account, asset) projection after a command."""

    __money_fields__: ClassVar[tuple[str, ...]] = ("available", "held")
    __zero_ok__: ClassVar[bool] = True

    account: str
    asset: str
    available: int
    held: int
    version: int


class MutationReply(Message):
    """What a mutating command did: the balances it touched and the events it appended."""

    op_id: str
    changes: list[BalanceState]
    event_ids: list[str]


#: The most commands one `wallet.batch` may carry (bounds one request's share of a group commit).
MAX_BATCH_COMMANDS = 256


class BatchItem(Message):
    """One command of a `wallet.batch`: exactly one of `hold`, `release` or `settle`."""

    hold: Hold | None = None
    release: Release | None = None
    settle: Settle | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> BatchItem:
        if (self.hold is not None) + (self.release is not None) + (self.settle is not None) != 1:
            raise QtError(ErrorCode.VALIDATION, "a batch item carries exactly one of hold, release, settle")
        return self

    @property
    def command(self) -> Hold | Release | Settle:
        """The command this item carries."""
        command = self.hold or self.release or self.settle
        assert command is not None
        return command


class WalletBatch(Message):
    """Several hold/release/settle commands applied in one group commit, each on its own op_id.

    Not atomic across items: each succeeds or is refused alone (as if sent one by one), and every
    result is durable before the reply. A malformed item refuses the whole request unapplied.
    """

    commands: Annotated[list[BatchItem], Field(min_length=1, max_length=MAX_BATCH_COMMANDS)]


class BatchResult(Message):
    """The outcome of one batch item, in request order: `ok` or `error` (`{code, message, detail}`)."""

    ok: MutationReply | None = None
    error: dict[str, Any] | None = None
    replayed: bool = False
    """The op_id had been applied before: this is the recorded answer (`Qt-Replayed` for a single call)."""


class WalletBatchReply(Message):
    """One result per command of a `WalletBatch`, in the same order."""

    results: list[BatchResult]


class BalanceReply(Message):
    """Every asset an account has touched: `{asset: {available, held}}`."""

    account: str
    balances: dict[str, BalanceState]

    def to_wire(self, wire: str) -> dict[str, Any]:
        """The contract shape: `{"account", "balances": {"USD": {"available", "held"}}}`."""
        out: dict[str, Any] = {}
        for asset, state in self.balances.items():
            row = dump(state, Wire(wire))
            out[asset] = {"available": row["available"], "held": row["held"], "version": row["version"]}
        return {"account": self.account, "balances": out}


class EventsReply(Message):
    """One page of events and the cursor for the next (None when no more)."""

    events: list[WalletEvent]
    next_after: int | None
    next_before: int | None = None
    """The cursor of the next page of a `newest_first` query (None when no more)."""


class Mismatch(MoneyMessage):
    """A projection that differed from the replay of the log."""

    __money_fields__: ClassVar[tuple[str, ...]] = ()

    account: str
    asset: str
    what: str
    stored: str
    replayed: str


class RebuildReply(Message):
    """The outcome of a rebuild: before/after projections and whether they were identical."""

    identical: bool
    accounts: int
    events_replayed: int
    snapshots_used: int
    before: list[BalanceState]
    after: list[BalanceState]
    mismatches: list[Mismatch]
    elapsed_us: int


class BadEvent(Message):
    """The first event (or snapshot) whose stored hash or state does not match a recomputation."""

    seq: int
    event_id: str
    account: str
    asset: str
    version: int
    reason: str


class VerifyReply(Message):
    """The outcome of a full verification from genesis."""

    ok: bool
    events_checked: int
    snapshots_checked: int
    first_bad: BadEvent | None

