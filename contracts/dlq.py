"""Dead letters: what a parked message says about itself, and the command that replays one."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Annotated

from pydantic import Field

from contracts.base import Message, Seq
from contracts.subjects import (
    DLQ_CONSUMER,
    DLQ_DELIVERIES,
    DLQ_LAST_ERROR,
    DLQ_ORIGIN_SEQ,
    DLQ_ORIGIN_STREAM,
    DLQ_ORIGIN_SUBJECT,
    DLQ_REPLAY_ENDPOINT,
    DLQ_SERVICE,
)


def dlq_replay_subject(service: str) -> str:
    """Where a parked message is sent back to the service that parked it: `<service>.dlq_replay`."""
    return f"{service}.{DLQ_REPLAY_ENDPOINT}"


class DlqReplay(Message):
    """Run the parked message at this `DLQ` stream sequence through its consumer's handler again."""

    seq: Annotated[Seq, Field(ge=1)]


class DlqReplayReply(Message):
    """A replayed message: where it came from, and what happened (`replayed` removes it from `DLQ`)."""

    seq: int
    origin_stream: str
    origin_seq: int
    outcome: str


class DlqEntry(Message):
    """One parked message as `qt dlq ls` shows it; `time` is when it was parked (UTC, ISO-8601)."""

    seq: int
    time: str
    origin_stream: str
    origin_subject: str
    origin_seq: int
    consumer: str
    service: str
    deliveries: int
    last_error: str
    size: int

    @classmethod
    def parked(cls, seq: int, time: datetime | None, headers: Mapping[str, str] | None, size: int) -> DlqEntry:
        """Read an entry from a `DLQ` message's headers; missing ones show as empty (or 0)."""
        found = headers or {}
        return cls(
            seq=seq,
            time=time.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") if time else "",
            origin_stream=found.get(DLQ_ORIGIN_STREAM, ""),
            origin_subject=found.get(DLQ_ORIGIN_SUBJECT, ""),
            origin_seq=_number(found.get(DLQ_ORIGIN_SEQ)),
            consumer=found.get(DLQ_CONSUMER, ""),
            service=found.get(DLQ_SERVICE, ""),
            deliveries=_number(found.get(DLQ_DELIVERIES)),
            last_error=found.get(DLQ_LAST_ERROR, ""),
            size=size,
        )


class DlqList(Message):
    """Parked messages, oldest first, and how many are parked in all (`GET /v1/ops/dlq`)."""

    entries: list[DlqEntry]
    total: int


def _number(text: str | None) -> int:
    # A hand-published or damaged message must still be listable, so a bad number reads as 0.
    try:
        return int(text or 0)
    except ValueError:
        return 0
