"""Pipelined JetStream publishing: a batch of messages sent back to back, their acks awaited together.

nats.py's `publish_async` costs a future, a random token, a semaphore `wait_for` and a JSON-decoded
PubAck per message; here every message of a batch carries the same reply subject and the acks are
only counted (an ack that is an error fails the batch). Re-sending a failed batch is safe because
every message has its own `Nats-Msg-Id`: the stream keeps the first copy and acks the rest as duplicates.
`publish_each` is the same pipeline for writers that need each message's own answer (compare-and-set
KV writes, where one refusal must fail only its own write): every message gets its own reply token.
`publish_atomic` sends a long batch to one stream as JetStream atomic batches (nats-server 2.12+,
`allow_atomic` on the stream): stored together, one ack per batch instead of one per message, and
on this box about 3x the messages/s under `sync_interval: always` (tooling/bench/jetstream.py).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg

#: Shortest batch sent atomically: an atomic batch takes ~2.5-3.5 ms to commit and ~1.7 ms of server CPU
#: even for one message (`qt bench saga`: nats-server CPU per stored message), where a plain pipelined
#: message costs ~0.06-0.25 ms of server CPU, so short batches go the plain way.
ATOMIC_MIN: Final = 32
#: Longest atomic batch nats-server accepts by default (`jetstream.limits.batch.max_msgs`).
ATOMIC_MAX: Final = 1000

Message = tuple[str, bytes, dict[str, str]]


class PublishFailed(Exception):
    """Some message of a batch was refused by the stream (or not acknowledged in time)."""


@dataclass
class _Batch:
    expected: int
    done: asyncio.Future[None]
    acked: int = 0
    errors: list[bytes] = field(default_factory=list)
    answers: dict[int, bytes] | None = None


class PipelinedPublisher:
    """Publishes batches of stream messages over one connection and awaits each batch's acks as a whole."""

    def __init__(self, nc: Client, timeout_s: float = 5.0) -> None:
        self.nc = nc
        self.timeout_s = timeout_s
        self._prefix = ""
        self._batches: dict[str, _Batch] = {}
        self._ids = itertools.count(1)

    async def start(self) -> None:
        """Subscribe the inbox every batch's acks come back to."""
        self._prefix = self.nc.new_inbox()
        await self.nc.subscribe(f"{self._prefix}.>", cb=self._on_ack)

    async def publish(self, messages: Sequence[Message]) -> None:
        """Send (subject, payload, headers) in order and return once the streams acknowledged every one."""
        if not messages:
            return
        if not self._prefix:
            await self.start()
        token = str(next(self._ids))
        batch = self._batches[token] = _Batch(len(messages), asyncio.get_running_loop().create_future())
        reply = f"{self._prefix}.{token}"
        publish = self.nc.publish
        try:
            for subject, payload, headers in messages:
                await publish(subject, payload, reply=reply, headers=headers)
            try:
                await asyncio.wait_for(batch.done, self.timeout_s)
            except TimeoutError:
                late = f"{batch.acked} of {batch.expected} acks on {messages[0][0]}... in {self.timeout_s}s"
                raise PublishFailed(late) from None
            if batch.errors:
                raise PublishFailed(f"{len(batch.errors)} of {batch.expected} refused on {messages[0][0]}...: "
                                    f"{batch.errors[0][:200]!r}")
        finally:
            del self._batches[token]

    async def publish_atomic(self, messages: Sequence[Message]) -> None:
        """`publish` for messages to one stream, as atomic batches when the batch is long: each stored
        whole or not at all, one ack each. A batch the stream refuses (e.g. a msg-id it already holds: a
        re-send after a crash) is sent again the plain way, where the msg-ids drop what is stored."""
        if len(messages) < ATOMIC_MIN:
            await self.publish(messages)
            return
        for start in range(0, len(messages), ATOMIC_MAX):
            chunk = messages[start:start + ATOMIC_MAX]
            if len(chunk) < ATOMIC_MIN or await self.commit_atomic(chunk) is None:
                await self.publish(chunk)

    async def publish_each_atomic(self, messages: Sequence[Message]) -> list[dict[str, Any] | None]:
        """`publish_each` for messages to one stream: a long batch goes atomically and each message's ack
        is derived from the commit's (a batch is stored at consecutive sequences); a refused batch (one
        compare-and-set failed) goes again message by message, so only the failing write fails."""
        if not ATOMIC_MIN <= len(messages) <= ATOMIC_MAX:
            return await self.publish_each(messages)
        try:
            ack = await self.commit_atomic(messages)
        except PublishFailed:  # no commit ack in time: like a message whose ack never came, each may be stored
            return [None] * len(messages)
        if ack is None:
            return await self.publish_each(messages)
        first = int(ack["seq"]) - len(messages) + 1
        return [{"stream": ack["stream"], "seq": first + i} for i in range(len(messages))]

    async def commit_atomic(self, messages: Sequence[Message]) -> dict[str, Any] | None:
        """Send one atomic batch of 1 to `ATOMIC_MAX` messages, however short: its commit ack, or None when the
        stream refused it (`publish_atomic` and `publish_each_atomic` choose when to; the bench measures it)."""
        if not self._prefix:
            await self.start()
        token = str(next(self._ids))
        batch = self._batches[token] = _Batch(1, asyncio.get_running_loop().create_future(), answers={})
        batch_id = uuid.uuid4().hex
        publish = self.nc.publish
        last = len(messages) - 1
        try:
            for i, (subject, payload, headers) in enumerate(messages):
                marks = {"Nats-Batch-Id": batch_id, "Nats-Batch-Sequence": str(i + 1)}
                if i == last:
                    marks["Nats-Batch-Commit"] = "1"
                await publish(subject, payload, reply=f"{self._prefix}.{token}.0" if i == last else "",
                              headers={**headers, **marks})
            try:
                await asyncio.wait_for(batch.done, self.timeout_s)
            except TimeoutError:
                raise PublishFailed(f"no commit ack for an atomic batch of {len(messages)} on {messages[0][0]}... "
                                    f"in {self.timeout_s}s") from None
            ack = _decode_ack((batch.answers or {}).get(0, b""))
            return None if "error" in ack or int(ack.get("count", 0)) != len(messages) else ack
        finally:
            del self._batches[token]

    async def publish_each(self, messages: Sequence[Message],
                           ) -> list[dict[str, Any] | None]:
        """Send (subject, payload, headers) in order; return each message's decoded ack (`{"stream", "seq"}`
        or `{"error": {...}}`), in order, None where no ack came back within the timeout."""
        if not messages:
            return []
        if not self._prefix:
            await self.start()
        token = str(next(self._ids))
        batch = self._batches[token] = _Batch(len(messages), asyncio.get_running_loop().create_future(), answers={})
        publish = self.nc.publish
        try:
            for i, (subject, payload, headers) in enumerate(messages):
                await publish(subject, payload, reply=f"{self._prefix}.{token}.{i}", headers=headers)
            await asyncio.wait({batch.done}, timeout=self.timeout_s)
            answers = batch.answers or {}
            return [_decode_ack(answers[i]) if i in answers else None for i in range(len(messages))]
        finally:
            del self._batches[token]

    async def _on_ack(self, msg: Msg) -> None:
        token, _, index = msg.subject[len(self._prefix) + 1:].partition(".")
        batch = self._batches.get(token)
        if batch is None:  # a late ack of a batch that already timed out
            return
        if batch.answers is not None:
            batch.answers[int(index)] = msg.data or b""
        elif not msg.data or b'"error"' in msg.data:  # an API error, or a 503 status: no stream took it
            batch.errors.append(msg.data or str(msg.headers).encode())
        batch.acked += 1
        if batch.acked == batch.expected and not batch.done.done():
            batch.done.set_result(None)


def _decode_ack(data: bytes) -> dict[str, Any]:
    """A PubAck, or `{"error": {"code": 503, ...}}` for an empty ack (no stream took the message)."""
    if not data:
        return {"error": {"code": 503, "description": "no stream response"}}
    ack: dict[str, Any] = json.loads(data)
    return ack
