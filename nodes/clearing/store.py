"""Saga records in the `sagas` KV bucket: create-if-absent and compare-and-set on the revision."""

from __future__ import annotations

from typing import Any

import msgpack
from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from contracts.clearing import SagaRecord


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

    def __init__(self, bucket: KeyValue) -> None:
        self.bucket = bucket

    async def create(self, saga: SagaRecord) -> int | None:
        """Store a new saga; None if the id is taken (the caller then reads the existing one)."""
        try:
            return await self.bucket.create(saga.saga_id, encode(saga))
        except KeyWrongLastSequenceError:
            return None

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
