"""Create the platform's streams and buckets from their specs, idempotently."""

from __future__ import annotations

from dataclasses import replace

from nats.js import JetStreamContext
from nats.js.api import KeyValueConfig, ObjectStoreConfig, StorageType, StreamConfig
from nats.js.errors import BucketNotFoundError, NotFoundError, ObjectNotFoundError

from contracts.subjects import BUCKETS, SNAPSHOTS_OBJECTS, STREAMS, BucketSpec, StreamSpec


def stream_config(spec: StreamSpec) -> StreamConfig:
    """The JetStream config of a stream spec (file storage, limits retention)."""
    return StreamConfig(
        name=spec.name,
        subjects=list(spec.subjects),
        description=spec.description,
        storage=StorageType.FILE,
        duplicate_window=spec.duplicate_window_s,
        max_age=spec.max_age_s,
        max_msgs=spec.max_msgs,
        allow_direct=True,
    )


async def ensure_stream(js: JetStreamContext, spec: StreamSpec) -> None:
    """Create the stream, or update it to the spec when it exists."""
    config = stream_config(spec)
    try:
        await js.stream_info(spec.name)
    except NotFoundError:
        await js.add_stream(config)
        return
    await js.update_stream(config)


async def ensure_bucket(js: JetStreamContext, spec: BucketSpec) -> None:
    """Create the KV bucket when it does not exist (existing buckets are left as they are)."""
    try:
        await js.key_value(spec.name)
    except BucketNotFoundError:
        await js.create_key_value(
            KeyValueConfig(
                bucket=spec.name, description=spec.description, ttl=spec.ttl_s or None,
                history=spec.history, storage=StorageType.FILE,
            )
        )


async def ensure_bucket_ttl(js: JetStreamContext, name: str, ttl_s: float) -> None:
    """The bucket with this TTL: created with it, or an existing bucket set to it (a setting wins)."""
    spec = next(bucket for bucket in BUCKETS if bucket.name == name)
    await ensure_bucket(js, replace(spec, ttl_s=ttl_s))
    config = (await js.stream_info(f"KV_{name}")).config
    if config.max_age != ttl_s:
        config.max_age = ttl_s
        config.duplicate_window = min(config.duplicate_window or ttl_s, ttl_s)  # the server's rule, as at create
        await js.update_stream(config)


async def ensure_snapshot_store(js: JetStreamContext) -> None:
    """The object store where engines keep their snapshots (shared, so a standby can use them)."""
    try:
        await js.object_store(SNAPSHOTS_OBJECTS)
    except (BucketNotFoundError, NotFoundError, ObjectNotFoundError):
        await js.create_object_store(
            SNAPSHOTS_OBJECTS,
            ObjectStoreConfig(description="engine snapshots", storage=StorageType.FILE),
        )


async def ensure_named(js: JetStreamContext, *, streams: tuple[str, ...], buckets: tuple[str, ...]) -> None:
    """The streams and buckets a node depends on, by name (a node needs no more than its own)."""
    for stream in STREAMS:
        if stream.name in streams:
            await ensure_stream(js, stream)
    for bucket in BUCKETS:
        if bucket.name in buckets:
            await ensure_bucket(js, bucket)


async def ensure_all(js: JetStreamContext) -> None:
    """Every stream, bucket and object store of the platform."""
    await ensure_named(js, streams=tuple(s.name for s in STREAMS), buckets=tuple(b.name for b in BUCKETS))
    await ensure_snapshot_store(js)
