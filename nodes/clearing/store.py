"""Saga records in the `sagas` KV bucket (create-if-absent, compare-and-set on the revision), their
index by account and time, and the busted trades of each order."""

from __future__ import annotations

import asyncio
from typing import Any

import msgpack
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.clearing import SagaRecord
from nodes.runtime.client import is_transient

#: Writes of a created saga's index entry before the request fails (about 5 s of a stream's election).
INDEX_ATTEMPTS = 10


class SagaConflict(Exception):
    """Someone else wrote the saga since we read it: we no longer own it."""


def encode(saga: SagaRecord) -> bytes:
    """The stored form: msgpack of the record's fields (integer units)."""
    return msgpack.packb(saga.model_dump(mode="python"), use_bin_type=True)


def decode(blob: bytes) -> SagaRecord:
    """A stored record back as a model (validated: the bucket is shared with every instance)."""
    data: dict[str, Any] = msgpack.unpackb(blob, raw=False)
    return SagaRecord.model_validate(data, strict=False)


class SagaStore:
    """Read and write saga records; every write names the revision it replaces."""

    def __init__(self, bucket: KeyValue, index: SagaIndex) -> None:
        self.bucket = bucket
        self.index = index

    async def create(self, saga: SagaRecord) -> int | None:
        """Store a new saga and index it; None if the id is taken (the caller then reads the existing one).

        Both writes go out together (one round trip on the order's path): an index entry whose create
        lost names a position no record has, and readers skip it (`SagaIndex.position` must match).
        """
        created, indexed = await asyncio.gather(self.bucket.create(saga.saga_id, encode(saga)),
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
        for attempt in range(INDEX_ATTEMPTS):
            if not is_transient(error):
                raise error
            await asyncio.sleep(0.1 * (attempt + 1))
            try:
                await self.index.add(saga)
                return
            except Exception as exc:
                error = exc
        raise error

    async def update(self, saga: SagaRecord, revision: int) -> int:
        """Replace revision `revision`; `SagaConflict` if it is not the latest any more."""
        try:
            return await self.bucket.update(saga.saga_id, encode(saga), last=revision)
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

    def __init__(self, bucket: KeyValue) -> None:
        self.bucket = bucket

    @staticmethod
    def position(saga: SagaRecord) -> str:
        """Where a saga sorts (and the cursor after it): creation time, then saga id."""
        return f"{saga.created_ns:020d}.{saga.saga_id}"

    async def add(self, saga: SagaRecord) -> None:
        """Index a saga under its account (idempotent)."""
        await self.bucket.put(f"{saga.account}.{self.position(saga)}", b"")

    async def newest(self, account: str | None, before: str | None = None) -> list[tuple[str, str]]:
        """(position, saga id) of one account's sagas (every account's when None), newest first,
        only those older than the `before` position when it is given."""
        found: list[tuple[str, str]] = []
        watcher = await self.bucket.watch(f"{account}.>" if account else ">", meta_only=True, ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:  # the watcher's marker: every key present was delivered
                    break
                position = entry.key.split(".", 1)[1]
                if before is None or position < before:
                    found.append((position, position.split(".", 1)[1]))
        finally:
            await watcher.stop()
        found.sort(reverse=True)
        return found

    async def backfill(self, sagas: KeyValue) -> int:
        """Index every stored saga when the index is empty (sagas written before it existed)."""
        if await self.newest(None):
            return 0
        count = 0
        watcher = await sagas.watchall(ignore_deletes=True)
        try:
            async for entry in watcher:
                if entry is None:
                    break
                if entry.value:
                    await self.add(decode(entry.value))
                    count += 1
        finally:
            await watcher.stop()
        return count


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
