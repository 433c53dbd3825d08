"""Read parked messages from the `DLQ` stream (one reader for the nodes, the gateway and `qt dlq`)."""

from __future__ import annotations

from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError

from contracts.dlq import DlqEntry
from contracts.errors import ErrorCode, QtError
from contracts.subjects import DLQ_STREAM


async def read_parked(js: JetStreamContext, seq: int) -> RawStreamMsg:
    """The `DLQ` message at `seq`, or `not_found` (never parked, or replayed since)."""
    try:
        return await js.get_msg(DLQ_STREAM, seq)
    except NotFoundError:
        raise QtError(ErrorCode.NOT_FOUND, f"no parked message at DLQ seq {seq} (replayed or never parked)",
                      {"seq": seq}) from None


async def list_parked(js: JetStreamContext, limit: int) -> tuple[list[DlqEntry], int]:
    """Up to `limit` parked messages, oldest first, and how many are parked in all."""
    try:
        info = await js.stream_info(DLQ_STREAM)
    except NotFoundError:  # created with the first durable worker: nothing was ever parked
        return [], 0
    entries: list[DlqEntry] = []
    seq = info.state.first_seq
    while len(entries) < limit and seq <= info.state.last_seq:
        try:
            # next_by_subj skips the holes replays leave, instead of asking for each deleted seq.
            msg = await js.get_msg(DLQ_STREAM, seq, subject="dlq.>", next=True)
        except NotFoundError:
            break
        found = msg.seq or seq
        entries.append(DlqEntry.parked(found, msg.time, msg.headers, len(msg.data or b"")))
        seq = found + 1
    return entries, info.state.messages
