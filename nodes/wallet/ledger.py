"""The pure core of the wallet: how an event moves money, and how events are hash-chained.

No I/O here: the store, rebuild and verify all fold events through these functions, so the
projection written at append time and the one recomputed from the log cannot disagree by code.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Final

from contracts.errors import ErrorCode, QtError
from contracts.money import MAX_UNITS, format_amount, out_of_range
from contracts.wallet import EventType

GENESIS_HASH: Final = "0" * 64

#: (delta available, delta held) per unit of an event's amount.
EFFECTS: Final[dict[str, tuple[int, int]]] = {
    EventType.DEPOSITED: (1, 0),
    EventType.CREDITED: (1, 0),
    EventType.WITHDRAWN: (-1, 0),
    EventType.HELD: (-1, 1),
    EventType.RELEASED: (1, -1),
    EventType.DEBITED: (0, -1),
    EventType.CHARGED: (-1, 0),
}


@dataclass(slots=True)
class Position:
    """The state of one (account, asset): balances, version, chain head and open holds."""

    available: int = 0
    held: int = 0
    version: int = 0
    head: str = GENESIS_HASH
    holds: dict[str, int] = field(default_factory=dict)

    def copy(self) -> Position:
        """An independent copy (holds included) for staging a change."""
        return Position(self.available, self.held, self.version, self.head, dict(self.holds))


def event_hash(
    prev_hash: str, account: str, asset: str, version: int, type_: str, amount: int,
    hold_id: str | None, op_id: str, ts_ns: int,
) -> str:
    """SHA-256 over the previous hash and every field of the event, in a fixed order."""
    text = f"{prev_hash}|{account}|{asset}|{version}|{type_}|{amount}|{hold_id or ''}|{op_id}|{ts_ns}"
    return hashlib.sha256(text.encode()).hexdigest()


def check_room(pos: Position, type_: str, amount: int, asset: str) -> None:
    """Refuse a new event that would push the (account, asset) total past `MAX_UNITS`.

    Only deposits and credits raise the total (a hold or release moves money inside it), so with
    every total bounded no balance or hold can overflow. Replays do not call this: history stays
    readable whatever the bound was when it was written.
    """
    d_avail, d_held = EFFECTS[type_]
    if d_avail + d_held > 0 and pos.available + pos.held + amount > MAX_UNITS:
        raise out_of_range(asset, "the balance", {
            "balance": format_amount(asset, pos.available + pos.held), "requested": format_amount(asset, amount),
        })


def fold(pos: Position, type_: str, amount: int, hold_id: str | None, asset: str) -> None:
    """Apply one event to a position in place; refuse (and change nothing) if it would go negative."""
    d_avail, d_held = EFFECTS[type_]
    available = pos.available + d_avail * amount
    held = pos.held + d_held * amount
    if available < 0 or held < 0:
        have, want = format_amount(asset, pos.available), format_amount(asset, amount)
        raise QtError(
            ErrorCode.INSUFFICIENT_FUNDS,
            f"insufficient funds: {have} {asset} available, {want} requested",
            {"asset": asset, "available": have, "held": format_amount(asset, pos.held), "requested": want},
        )
    if type_ in (EventType.RELEASED, EventType.DEBITED):
        left = pos.holds.get(hold_id or "", 0)
        if amount > left:
            have, want = format_amount(asset, left), format_amount(asset, amount)
            raise QtError(
                ErrorCode.INSUFFICIENT_FUNDS,
                f"hold {hold_id} has {have} {asset} left, {want} requested",
                {"hold_id": hold_id, "remaining": have, "requested": want},
            )
        if amount == left:
            del pos.holds[hold_id or ""]
        else:
            pos.holds[hold_id or ""] = left - amount
    elif type_ == EventType.HELD:
        pos.holds[hold_id or ""] = pos.holds.get(hold_id or "", 0) + amount
    pos.available = available
    pos.held = held
    pos.version += 1
