"""Read what JetStream holds for operators: one reader for `qt streams` and `GET /v1/ops/streams`."""

from __future__ import annotations

import json

from nats.js import JetStreamContext
from nats.js.errors import KeyNotFoundError, NotFoundError

from contracts.streams import BucketView, ConsumerView, LeaseView, StreamsReply, StreamView
from contracts.subjects import LEASES_BUCKET

KV_PREFIX = "KV_"


async def jetstream_overview(js: JetStreamContext) -> StreamsReply:
    """Read every stream, consumer, bucket and lease from the JetStream API (read-only)."""
    streams: list[StreamView] = []
    buckets: list[BucketView] = []
    for info in sorted(await js.streams_info(), key=lambda s: s.config.name or ""):
        name, state = info.config.name or "", info.state
        if name.startswith(KV_PREFIX):
            buckets.append(BucketView(name=name.removeprefix(KV_PREFIX), values=state.messages,
                                      history=info.config.max_msgs_per_subject or 1, ttl_s=info.config.max_age))
            continue
        consumers = [ConsumerView(name=c.name or "", pending=c.num_pending or 0, ack_pending=c.num_ack_pending or 0,
                                  redelivered=c.num_redelivered or 0)
                     for c in sorted(await js.consumers_info(name), key=lambda c: c.name or "")]
        streams.append(StreamView(name=name, subjects=list(info.config.subjects or []), messages=state.messages,
                                  bytes=state.bytes, first_seq=state.first_seq, last_seq=state.last_seq,
                                  consumers=consumers))
    return StreamsReply(streams=streams, buckets=buckets, leases=await leases(js))


async def leases(js: JetStreamContext) -> list[LeaseView]:
    """The leases held now: the bucket's live keys (from the stream's subject counts), each read once."""
    prefix = f"$KV.{LEASES_BUCKET}."
    try:
        info = await js.stream_info(f"{KV_PREFIX}{LEASES_BUCKET}", subjects_filter=f"{prefix}>")
        bucket = await js.key_value(LEASES_BUCKET)
    except NotFoundError:
        return []
    found: list[LeaseView] = []
    for subject in sorted(info.state.subjects or {}):
        key = subject.removeprefix(prefix)
        try:
            entry = await bucket.get(key)
        except KeyNotFoundError:  # expired or released since the stream was read
            continue
        try:
            value = json.loads(entry.value or b"{}")
        except ValueError:
            value = {}
        if not isinstance(value, dict):
            value = {}
        pid = value.get("pid")
        found.append(LeaseView(key=key, owner=str(value.get("owner", "")), host=str(value.get("host", "")),
                               pid=pid if isinstance(pid, int) else None, token=entry.revision or 0))
    return found
