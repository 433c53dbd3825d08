"""Smart batching of one instrument's journal appends (LMAX/Aeron style, no timer).

Commands that arrive while `APPENDS_IN_FLIGHT` appends are in flight wait in a queue; when one is
acknowledged the next takes everything queued (up to `MAX_BATCH`) and appends it as ONE `ORDERS`
message, so one fsync and one PubAck cover many commands. At low load a command finds a free slot
and is journaled alone, in the single-command shape, with no added latency.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Callable
from typing import Any, Final

import msgpack
from nats.js import JetStreamContext
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from contracts.errors import ErrorCode, QtError
from contracts.subjects import ORDERS_STREAM
from nodes.matching.engine import BATCH
from nodes.runtime.batcher import SmartBatcher
from nodes.runtime.log import kv
from nodes.runtime.tracing import handling, inject

log = logging.getLogger(__name__)
#: Most commands in one journal message: ~200 bytes each keeps a batch far under NATS's 1 MB max_payload.
MAX_BATCH: Final = 500
_TRACER = trace.get_tracer("qt.matching")
#: Journal appends in flight at once. One left the server idle while the node applied and answered the
#: last batch; four overlap the fsync with that work (64 clients: ahead of one in four alternating pairs, by 2-36%).
#: Appends of concurrent commands may land in either order: none of them was answered before the others.
APPENDS_IN_FLIGHT: Final = 4
#: A queued command: its key, its journal entry, the trace headers of the request that sent it.
Queued = tuple[str, dict[str, Any], dict[str, str]]


def batch_msg_id(keys: list[str]) -> str:
    """`Nats-Msg-Id` of a batch: a digest of its command keys in order, so re-sending the same batch
    is deduplicated by JetStream while a batch that differs in any command is never mistaken for it."""
    return "batch:" + hashlib.blake2b("\n".join(keys).encode(), digest_size=16).hexdigest()


def journal_message(commands: list[tuple[str, dict[str, Any]]]) -> tuple[bytes, str]:
    """The payload and msg-id of one journal message holding `commands` ((key, entry) pairs, in order).

    One command keeps the original shape (the entry itself, msg-id = its command key); more are a
    `batch` entry whose commands the engine applies in order as if each had its own sequence.
    """
    if len(commands) == 1:
        key, entry = commands[0]
        return msgpack.packb(entry), key
    return (msgpack.packb({"op": BATCH, "commands": [entry for _key, entry in commands]}),
            batch_msg_id([key for key, _entry in commands]))


class JournalWriter:
    """Appends commands to `orders.<instrument>`, many per message under load, a few appends in flight."""

    def __init__(self, js: JetStreamContext, subject: str, timeout_s: float = 5.0) -> None:
        self.js = js
        self.subject = subject
        self.timeout_s = timeout_s
        self._batcher: SmartBatcher[Queued, int] = SmartBatcher(
            subject, self._write, max_batch=MAX_BATCH, max_in_flight=APPENDS_IN_FLIGHT)
        self._inflight: dict[str, asyncio.Future[int]] = {}
        """Command key -> the journal sequence it gets, while queued or being appended (a repeat joins it)."""

    async def append(self, key: str, entry: dict[str, Any]) -> int:
        """Journal `entry` (command key `key`) and return the `ORDERS` sequence of the message holding it."""
        pending = self._inflight.get(key)
        if pending is None:
            pending = self._inflight[key] = self._batcher.enqueue((key, entry, inject()))
            pending.add_done_callback(self._forget(key))
        # shielded: a caller that gives up must not cancel the sequence another caller of the same key awaits
        return await asyncio.shield(pending)

    def _forget(self, key: str) -> Callable[[asyncio.Future[int]], None]:
        def forget(done: asyncio.Future[int]) -> None:
            if self._inflight.get(key) is done:
                del self._inflight[key]
        return forget

    async def _write(self, batch: list[Queued]) -> list[int]:
        payload, msg_id = journal_message([(key, entry) for key, entry, _trace in batch])
        # One message has one `traceparent`: the first command's; a batch's span links the others.
        traces = [trace_headers for _key, _entry, trace_headers in batch]
        try:
            with handling(_TRACER, "orders.append", traces[0], SpanKind.PRODUCER, links=traces[1:]):
                ack = await self.js.publish(self.subject, payload, timeout=self.timeout_s, stream=ORDERS_STREAM,
                                            headers=inject({"Nats-Msg-Id": msg_id}))
        except Exception as exc:  # unknown whether it was stored: the callers retry with the same keys
            log.warning("journal append failed", extra=kv(subject=self.subject, commands=len(batch),
                                                          error=repr(exc)))
            raise QtError(ErrorCode.UNAVAILABLE, "journal append failed; retry the same command") from exc
        return [ack.seq] * len(batch)
