"""Saga records in the `sagas` KV bucket (create-if-absent, compare-and-set on the revision), their
index by account and time, and the busted trades of each order.

Record and index writes go through `KvWrites`: a KV write is a JetStream publish to `$KV.<bucket>.<key>`
(the compare-and-set is the `Nats-Expected-Last-Subject-Sequence` header), so the writes of every saga
waiting meanwhile go out as one pipelined flush whose acks are awaited together, each with its own
answer (a conflict fails only its own saga).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Sequence
from typing import Any, Final

import msgpack
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.api import DeliverPolicy
from nats.js.client import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.clearing import FINAL_STATUSES, SagaRecord
from contracts.matching import STORED
from mesh.backoff import Backoff
from nodes.runtime.batcher import BatchMetrics, SmartBatcher
from nodes.runtime.client import is_transient
from nodes.runtime.pipeline import Message, PipelinedPublisher

#: JetStream's "wrong last sequence" error codes: the compare-and-set lost.
WRONG_LAST_SEQUENCE: Final = frozenset({10071, 10164})
#: KV writes one pipelined flush carries at most.
MAX_KV_BATCH: Final = 512
#: Writes of a created saga's index entry before the request fails (about 5 s of a stream's election).
INDEX_ATTEMPTS = 10
INDEX_BACKOFF = Backoff(initial_s=0.1, max_s=1.0)
#: How long one index entry may take to arrive while a listing reads them (they are already stored).
KEYS_READ_TIMEOUT_S: Final = 5.0


class SagaConflict(Exception):
    """Someone else wrote the saga since we read it: we no longer own it."""


def encode(saga: SagaRecord) -> bytes:
    """The stored form: msgpack of the record's fields (integer units)."""
    blob: bytes = msgpack.packb(saga.model_dump(mode="python"), use_bin_type=True)
    return blob


def decode(blob: bytes) -> SagaRecord:
    """A stored record back as a model (validated: the bucket is shared with every instance; its request's
    terms are not checked again, so a rule changed since does not make it unreadable)."""
    data: dict[str, Any] = msgpack.unpackb(blob, raw=False)
    return SagaRecord.model_validate(data, strict=False, context={STORED: True})


def stored_final(blob: bytes) -> bool:
    """Whether a stored record is final, read without validating it: a scan of the whole bucket validates
    only the few records that are not (a full `decode` costs ~3x the unpacking)."""
    try:
        data = msgpack.unpackb(blob, raw=False)
    except Exception:  # unreadable: the caller's `decode` says why
        return False
    return isinstance(data, dict) and data.get("status") in FINAL_STATUSES


class KvWrites:
    """Puts and compare-and-set writes to KV buckets, smart-batched (one flush in flight; what queues
    meanwhile goes in the next), each answered with its own revision or error."""

    def __init__(self, publisher: PipelinedPublisher, *, metrics: BatchMetrics | None = None) -> None:
        self.publisher = publisher
        # Two flushes in flight: a saga's create never waits behind another saga's final write (JetStream
        # fsyncs each message anyway, so a smaller batch costs no extra durable write).
        self.batcher: SmartBatcher[Message, int] = SmartBatcher("kv", self._send, max_batch=MAX_KV_BATCH,
                                                               max_in_flight=2, metrics=metrics)

    def put(self, bucket: str, key: str, value: bytes, *, last: int | None = None) -> Awaitable[int]:
        """Write `key`: the new revision. With `last`, only over that revision (0: only if absent), else
        `KeyWrongLastSequenceError`; a write whose ack never came is a `nats.errors.TimeoutError`."""
        headers = {} if last is None else {"Nats-Expected-Last-Subject-Sequence": str(last)}
        return self.batcher.enqueue((f"$KV.{bucket}.{key}", value, headers))

    async def _send(self, writes: list[Message]) -> Sequence[int | BaseException]:
        """One flush: the writes to each bucket go as one batch (atomic when long: one ack, one commit),
        the buckets' batches in flight together."""
        by_bucket: dict[str, list[int]] = {}
        for i, (subject, _, _) in enumerate(writes):
            by_bucket.setdefault(subject.split(".", 2)[1], []).append(i)
        groups = list(by_bucket.values())
        acks = await asyncio.gather(*(self.publisher.publish_each_atomic([writes[i] for i in group])
                                      for group in groups))
        out: list[int | BaseException] = [NatsTimeoutError()] * len(writes)
        for group, answers in zip(groups, acks, strict=True):
            for i, ack in zip(group, answers, strict=True):
                out[i] = _revision(ack)
        return out


def _revision(ack: dict[str, Any] | None) -> int | BaseException:
    if ack is None:
        return NatsTimeoutError()
    error = ack.get("error")
    if error is None:
        return int(ack["seq"])
    if error.get("err_code") in WRONG_LAST_SEQUENCE:
        return KeyWrongLastSequenceError(description=error.get("description"))
    try:
        APIError.from_error(error)
    except APIError as exc:
        return exc
    return APIError(description=str(error))  # pragma: no cover - from_error always raises


class SagaStore:
    """Read and write saga records; every write names the revision it replaces."""

    def __init__(self, bucket: KeyValue, index: SagaIndex, writes: KvWrites, bucket_name: str) -> None:
        self.bucket = bucket
        self.index = index
        self.writes = writes
        self.bucket_name = bucket_name

    async def create(self, saga: SagaRecord) -> int | None:
        """Store a new saga and index it; None if the id is taken (the caller then reads the existing one).

        Both writes go out together (one round trip on the order's path): an index entry whose create
        lost names a position no record has, and readers skip it (`SagaIndex.position` must match).
        """
        created, indexed = await asyncio.gather(self.writes.put(self.bucket_name, saga.saga_id, encode(saga), last=0),
                                                self.index.add(saga), return_exceptions=True)
        if isinstance(created, KeyWrongLastSequenceError):
            return None
        if isinstance(created, BaseException):
            raise created
        if isinstance(indexed, BaseException):
            # The record exists and this instance drives it, so no recovery claim will index it:
            # write the entry again while JetStream recovers (a stream electing its leader).
            await self._index_again(saga, indexed)
        return created

    async def _index_again(self, saga: SagaRecord, error: BaseException) -> None:
        delays = INDEX_BACKOFF.delays()
        for _ in range(INDEX_ATTEMPTS):
            if not is_transient(error):
                raise error
            await asyncio.sleep(next(delays))
            try:
                await self.index.add(saga)
                return
            except Exception as exc:
                error = exc
        raise error

    async def update(self, saga: SagaRecord, revision: int) -> int:
        """Replace revision `revision`; `SagaConflict` if it is not the latest any more."""
        try:
            return await self.writes.put(self.bucket_name, saga.saga_id, encode(saga), last=revision)
        except KeyWrongLastSequenceError as exc:
            raise SagaConflict(saga.saga_id) from exc

    async def get(self, saga_id: str) -> tuple[SagaRecord, int] | None:
        """The latest record and its revision, or None."""
        try:
            entry = await self.bucket.get(saga_id)
        except KeyNotFoundError:
            return None
        if entry.value is None:
            return None
        return decode(entry.value), entry.revision or 0


class SagaIndex:
    """Saga ids by account and creation time in the `saga_index` bucket, for newest-first pages.

    Key `<account>.<created ns, 20 digits>.<saga id>`: deterministic from the stored record, so
    writing it again (a retry, a recovery claim) is the same key, and a saga is indexed once. It is
    written with the record's create and again when recovery claims a saga, so a crash between the
    two is repaired by the instance that takes the saga over. An entry is valid only if its
    position is the stored record's (a create that lost to an existing id leaves a stray one).
    """

    def __init__(self, js: JetStreamContext, writes: KvWrites, bucket_name: str) -> None:
        self.js = js
        self.writes = writes
        self.bucket_name = bucket_name

    @staticmethod
    def position(saga: SagaRecord) -> str:
        """Where a saga sorts (and the cursor after it): creation time, then saga id."""
        return f"{saga.created_ns:020d}.{saga.saga_id}"

    def add(self, saga: SagaRecord) -> Awaitable[int]:
        """Index a saga under its account (idempotent); queued at once, so it shares the record's batch."""
        return self.writes.put(self.bucket_name, f"{saga.account}.{self.position(saga)}", b"")

    async def newest(self, account: str | None, before: str | None = None) -> list[tuple[str, str]]:
        """(position, saga id) of one account's sagas (every account's when None), newest first,
        only those older than the `before` position when it is given."""
        found: list[tuple[str, str]] = []
        for key in await self._keys(f"{account}.>" if account else ">"):
            position = key.split(".", 1)[1]
            if before is None or position < before:
                found.append((position, position.split(".", 1)[1]))
        found.sort(reverse=True)
        return found

    async def _keys(self, pattern: str) -> list[str]:
        return [key for key, _ in await latest_entries(self.js, self.bucket_name, pattern, headers_only=True)]

    async def backfill(self, sagas_bucket: str) -> int:
        """Index every stored saga when the index holds nothing (sagas written before it existed).

        Its stream's message count says so: the index holds an entry per saga ever placed, and listing them
        to see whether there are any held every start back that long (~24 µs an entry here) and in memory.
        """
        if (await self.js.stream_info(f"KV_{self.bucket_name}")).state.messages:
            return 0
        count = 0
        async for _, value in bucket_entries(self.js, sagas_bucket):
            if value:
                await self.add(decode(value))
                count += 1
        return count


async def latest_entries(js: JetStreamContext, bucket: str, pattern: str = ">", *,
                         headers_only: bool = False) -> list[tuple[str, bytes]]:
    """(key, value) of every live key of `bucket` matching `pattern`, as of the moment of the call
    (values empty with `headers_only`)."""
    return [entry async for entry in bucket_entries(js, bucket, pattern, headers_only=headers_only)]


async def bucket_entries(js: JetStreamContext, bucket: str, pattern: str = ">", *,
                         headers_only: bool = False) -> AsyncIterator[tuple[str, bytes]]:
    """`latest_entries` one at a time, as they arrive: a reader of a big bucket holds only what the server
    pushed ahead of it (bounded by the consumer's flow control), not the whole bucket.

    nats.py's `KeyValue.watch` puts its "nothing more" marker first when the server had already
    delivered every entry but this client had read none yet, so a listing could come back empty;
    here the count comes from the consumer (delivered + pending), and that many messages are read.
    """
    prefix = f"$KV.{bucket}."
    sub = await js.subscribe(f"{prefix}{pattern}", stream=f"KV_{bucket}", ordered_consumer=True,
                             deliver_policy=DeliverPolicy.LAST_PER_SUBJECT, headers_only=headers_only)
    try:
        info = await sub.consumer_info()
        delivered = info.delivered.consumer_seq if info.delivered is not None else 0
        for _ in range((delivered or 0) + (info.num_pending or 0)):
            msg = await sub.next_msg(timeout=KEYS_READ_TIMEOUT_S)
            if (msg.headers or {}).get("KV-Operation") not in ("DEL", "PURGE"):
                yield msg.subject[len(prefix):], msg.data
    finally:
        await sub.unsubscribe()


class BustMarks:
    """Busted trade ids per order in the `busts` bucket, written for both the maker's and the taker's
    order when a saga reverses a fill: an order's view tells its busted fills with one read."""

    def __init__(self, bucket: KeyValue) -> None:
        self.bucket = bucket

    async def add(self, order_id: str, trade_id: str) -> None:
        """Mark `trade_id` busted for `order_id` (a set: marking twice changes nothing)."""
        while True:
            try:
                entry = await self.bucket.get(order_id)
            except KeyNotFoundError:
                entry = None
            known: list[str] = msgpack.unpackb(entry.value, raw=False) if entry is not None and entry.value else []
            if trade_id in known:
                return
            blob = msgpack.packb([*known, trade_id], use_bin_type=True)
            try:
                if entry is None:
                    await self.bucket.create(order_id, blob)
                else:
                    await self.bucket.update(order_id, blob, last=entry.revision)
                return
            except KeyWrongLastSequenceError:
                continue  # the other side's saga marked another trade of this order meanwhile

    async def of(self, order_id: str) -> frozenset[str]:
        """The trade ids busted on `order_id`."""
        try:
            entry = await self.bucket.get(order_id)
        except KeyNotFoundError:
            return frozenset()
        return frozenset(msgpack.unpackb(entry.value, raw=False)) if entry.value else frozenset()
