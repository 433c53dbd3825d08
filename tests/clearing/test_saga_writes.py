"""Saga record writes queued together go to JetStream as one pipelined flush (acks awaited together),
and each keeps its own compare-and-set answer: a conflict fails only its own write."""

from __future__ import annotations

import asyncio
import uuid

from nats.aio.client import Client
from nats.js.errors import KeyWrongLastSequenceError
from prometheus_client import CollectorRegistry

from nodes.clearing.store import KvWrites
from nodes.runtime.batcher import BatchMetrics
from nodes.runtime.pipeline import PipelinedPublisher


async def test_writes_queued_together_share_one_flush_and_a_conflict_fails_only_itself(nc: Client) -> None:
    name = f"writes{uuid.uuid4().hex[:8]}"
    kv = await nc.jetstream().create_key_value(bucket=name)
    taken = await kv.create("taken", b"first")
    registry = CollectorRegistry()
    writes = KvWrites(PipelinedPublisher(nc), metrics=BatchMetrics(registry))

    results = await asyncio.gather(
        *(writes.put(name, f"saga{i}", f"v{i}".encode(), last=0) for i in range(5)),
        writes.put(name, "taken", b"second", last=0),  # create over an existing key
        writes.put(name, "index.entry", b""),  # a plain put
        return_exceptions=True,
    )

    assert all(isinstance(r, int) for r in results[:5]) and isinstance(results[6], int)
    assert isinstance(results[5], KeyWrongLastSequenceError)
    assert registry.get_sample_value("qt_batch_items_count", {"batcher": "kv"}) == 1
    assert registry.get_sample_value("qt_batch_items_sum", {"batcher": "kv"}) == 7
    assert [(await kv.get(f"saga{i}")).value for i in range(5)] == [f"v{i}".encode() for i in range(5)]
    assert (await kv.get("taken")).value == b"first"  # the refused create wrote nothing
    assert (await kv.get("taken")).revision == taken


async def test_an_update_over_a_stale_revision_is_refused_and_the_current_one_applies(nc: Client) -> None:
    name = f"writes{uuid.uuid4().hex[:8]}"
    kv = await nc.jetstream().create_key_value(bucket=name)
    first = await kv.create("a", b"1")
    second = await kv.update("a", b"2", last=first)
    writes = KvWrites(PipelinedPublisher(nc))

    stale, current = await asyncio.gather(writes.put(name, "a", b"stale", last=first),
                                          writes.put(name, "a", b"3", last=second), return_exceptions=True)

    assert isinstance(stale, KeyWrongLastSequenceError)
    assert current == (await kv.get("a")).revision and (await kv.get("a")).value == b"3"
