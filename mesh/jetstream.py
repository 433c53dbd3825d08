"""Create the platform's streams and buckets from their specs, idempotently.

`replicas` is how many servers keep each one: 1 on a single server, 3 on a cluster (`qt up --cluster 3`
creates everything R3 before any node starts). A node's own `ensure_*` passes None: it creates what is
missing with one replica and never changes the replicas of what exists.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from dataclasses import replace

from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import (
    BadRequestError,
    BucketNotFoundError,
    NotFoundError,
    ObjectNotFoundError,
    ServiceUnavailableError,
)

from contracts.subjects import BUCKETS, SNAPSHOTS_OBJECTS, STREAMS, BucketSpec, StreamSpec
from mesh.backoff import Backoff

#: Tries of one stream's or bucket's creation before a node gives up (0.5 + 1 + 2 s of waiting).
ATTEMPTS = 4
PATIENCE = Backoff(initial_s=0.5, max_s=2.0)
#: JetStream's error code for a replicated stream no set of current peers can hold yet.
NO_PEERS = 10005


def stream_config(spec: StreamSpec, replicas: int = 1) -> StreamConfig:
    """The JetStream config of a stream spec (file storage, limits retention)."""
    return StreamConfig(
        num_replicas=replicas,
        name=spec.name,
        subjects=list(spec.subjects),
        description=spec.description,
        storage=StorageType.FILE,
        duplicate_window=spec.duplicate_window_s,
        max_age=spec.max_age_s,
        max_msgs=spec.max_msgs,
        allow_direct=True,
        allow_atomic=True,  # long publish batches go as atomic batches: one ack each (nodes/runtime/pipeline.py)
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec, replicas: int | None = None) -> None:
    """Create the stream, or update it to the spec when it exists (keeping its replicas unless given)."""
    try:
        info = await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(stream_config(spec, replicas or 1))
        return
    await js.update_stream(stream_config(spec, replicas or info.config.num_replicas or 1))


def bucket_config(spec: BucketSpec, replicas: int = 1) -> StreamConfig:
    """The stream behind a KV bucket: what nats.py's `create_key_value` makes, plus `allow_atomic` (long
    batches of writes go as atomic batches: nodes/runtime/pipeline.py), which its config cannot say."""
    return StreamConfig(
        name=f"KV_{spec.name}", description=spec.description, subjects=[f"$KV.{spec.name}.>"],
        allow_direct=True, allow_rollup_hdrs=True, allow_msg_ttl=True, deny_delete=True,
        discard=DiscardPolicy.NEW, duplicate_window=min(spec.ttl_s, 120.0) if spec.ttl_s else 120.0,
        max_age=spec.ttl_s or None, max_consumers=-1, max_msgs=-1, max_msgs_per_subject=spec.history,
        num_replicas=replicas, storage=StorageType.FILE, allow_atomic=True,
    )


async def ensure_bucket(js: JetStreamContext, spec: BucketSpec, replicas: int | None = None, *,
                        upgrade: bool = False) -> None:
    """Create the KV bucket when it does not exist. An existing one is left as it is, unless `upgrade`
    (ops: `qt up`), which lets a bucket made before atomic batches take them."""
    try:
        await js.key_value(spec.name)
    except BucketNotFoundError:
        await js.add_stream(bucket_config(spec, replicas or 1))
        return
    if upgrade:
        config = (await js.stream_info(f"KV_{spec.name}")).config
        if not config.allow_atomic:
            config.allow_atomic = True
            await js.update_stream(config)


async def ensure_bucket_ttl(js: JetStreamContext, name: str, ttl_s: float) -> None:
    """The bucket with this TTL: created with it, or an existing bucket set to it (a setting wins)."""
    spec = next(bucket for bucket in BUCKETS if bucket.name == name)
    await ensure_bucket(js, replace(spec, ttl_s=ttl_s))
    config = (await js.stream_info(f"KV_{name}")).config
    if config.max_age != ttl_s:
        config.max_age = ttl_s
        config.duplicate_window = min(config.duplicate_window or ttl_s, ttl_s)  # the server's rule, as at create
        await js.update_stream(config)


async def ensure_snapshot_store(js: JetStreamContext, replicas: int | None = None) -> None:
    """The object store where engines keep their snapshots (shared, so a standby can use them)."""
    try:
        await js.object_store(SNAPSHOTS_OBJECTS)
    except (BucketNotFoundError, NotFoundError, ObjectNotFoundError):
        await js.create_object_store(
            SNAPSHOTS_OBJECTS,
            ObjectStoreConfig(description="engine snapshots", storage=StorageType.FILE, replicas=replicas or 1),
        )


async def ensure_named(js: JetStreamContext, *, streams: tuple[str, ...], buckets: tuple[str, ...],
                       replicas: int | None = None, upgrade: bool = False) -> None:
    """The streams and buckets a node depends on, by name (a node needs no more than its own)."""
    for stream in STREAMS:
        if stream.name in streams:
            await _patiently(functools.partial(ensure_stream, js, stream, replicas))
    for bucket in BUCKETS:
        if bucket.name in buckets:
            await _patiently(functools.partial(ensure_bucket, js, bucket, replicas, upgrade=upgrade))


async def _patiently(call: Callable[[], Awaitable[None]]) -> None:
    """Run `call`, again while JetStream does not answer in time: a busy cluster starting up, or
    electing a stream's leader, is slower than one request's timeout, and a node must not die of it."""
    delays = PATIENCE.delays()
    for attempt in range(1, ATTEMPTS + 1):
        try:
            await call()
            return
        except (NatsTimeoutError, NoRespondersError, ServiceUnavailableError, BadRequestError) as exc:
            # 10005: "no suitable peers for placement": a cluster member not current with the others yet
            if attempt == ATTEMPTS or (isinstance(exc, BadRequestError) and exc.err_code != NO_PEERS):
                raise
            await asyncio.sleep(next(delays))


async def ensure_all(js: JetStreamContext, replicas: int = 1) -> None:
    """Every stream, bucket and object store of the platform, each kept by `replicas` servers."""
    await ensure_named(js, streams=tuple(s.name for s in STREAMS), buckets=tuple(b.name for b in BUCKETS),
                       replicas=replicas, upgrade=True)
    await _patiently(lambda: ensure_snapshot_store(js, replicas))
