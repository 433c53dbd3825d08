"""What JetStream holds, as operators read it: streams with their consumers' lag, KV buckets, leases.

The models only; `mesh.streams` reads them from JetStream.
"""

from __future__ import annotations

from contracts.base import Message


class ConsumerView(Message):
    """A consumer of a stream: `pending` is its lag (messages not yet delivered)."""

    name: str
    pending: int
    ack_pending: int
    redelivered: int


class StreamView(Message):
    """A stream's subjects and state, with its consumers."""

    name: str
    subjects: list[str]
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: list[ConsumerView]


class BucketView(Message):
    """A KV bucket (a stream underneath): how many values it keeps and for how long."""

    name: str
    values: int
    history: int
    ttl_s: float | None


class LeaseView(Message):
    """A partition lease: who holds it; `token` (the revision at acquisition or last renewal) fences."""

    key: str
    owner: str
    host: str
    pid: int | None
    token: int


class StreamsReply(Message):
    """Every stream with its consumers, every KV bucket, and the leases held now."""

    streams: list[StreamView]
    buckets: list[BucketView]
    leases: list[LeaseView]
