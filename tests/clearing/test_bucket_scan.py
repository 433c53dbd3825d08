"""Recovery's scan of the `sagas` bucket: entries are read one at a time as they arrive (a reader holds one,
not the whole bucket), and only records that are not final are validated."""

from __future__ import annotations

import asyncio
import time
import uuid

import msgpack
import pytest
from nats.aio.client import Client

from contracts.clearing import FINAL_STATUSES, PlaceOrder, SagaStatus
from contracts.matching import Side
from nodes.clearing import saga as machine
from nodes.clearing.node import request_hash
from nodes.clearing.store import bucket_entries, encode, latest_entries, stored_final


def _record(status: SagaStatus) -> bytes:
    command = PlaceOrder(account="scan", instrument="AAPL", side=Side.BUY, price=100, qty=10_000)
    saga = machine.new_saga(f"scan-{status}", command, request_hash(command.model_dump(mode="python")),
                            ("USD", 101), time.time_ns())
    saga.status = status
    return encode(saga)


@pytest.mark.parametrize("status", list(SagaStatus))
def test_a_stored_record_tells_whether_it_is_final_without_being_validated(status: SagaStatus) -> None:
    assert stored_final(_record(status)) is (status in FINAL_STATUSES)


@pytest.mark.parametrize("blob", [b"", b"\xc1", msgpack.packb([1, 2]), msgpack.packb({"status": "completedx"})])
def test_an_unreadable_or_unknown_record_is_not_taken_for_final(blob: bytes) -> None:
    assert stored_final(blob) is False  # the scan then decodes it and logs why it cannot


async def test_a_bucket_read_one_at_a_time_gives_the_latest_value_of_each_live_key(nc: Client) -> None:
    name = f"scan{uuid.uuid4().hex[:8]}"
    kv = await nc.jetstream().create_key_value(bucket=name, history=5)
    await kv.put("a", b"a1")
    await kv.put("gone", b"x")
    await kv.put("a", b"a2")
    await kv.delete("gone")
    # more than nats-server pushes before the reader answers its flow control: the slow reader below
    # must still get every entry, each once
    payload = b"p" * 2048
    for start in range(0, 3000, 500):
        acks = [await nc.jetstream().publish_async(f"$KV.{name}.k{i}", payload) for i in range(start, start + 500)]
        await asyncio.gather(*acks)

    seen: list[tuple[str, bytes]] = []
    async for key, value in bucket_entries(nc.jetstream(), name):
        seen.append((key, value))
        if len(seen) % 100 == 0:
            await asyncio.sleep(0.01)

    assert ("a", b"a2") in seen and all(key != "gone" for key, _ in seen)
    assert sorted(key for key, _ in seen if key.startswith("k")) == sorted(f"k{i}" for i in range(3000))
    assert len(seen) == 3001
    assert sorted(await latest_entries(nc.jetstream(), name)) == sorted(seen)
