"""Recovery's scan of the `sagas` bucket: entries are read one at a time as they arrive (not listed whole
first), only records that are not final are validated, and a long scan does not silence the instance."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import socket
import time
import uuid
from datetime import datetime

import msgpack
import pytest
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError

from contracts.clearing import FINAL_STATUSES, PlaceOrder, SagaStatus
from contracts.matching import Side
from contracts.subjects import PRESENCE_BUCKET, SAGA_INDEX_BUCKET, SAGAS_BUCKET
from mesh.jetstream import ensure_named
from nodes.clearing import saga as machine
from nodes.clearing.node import request_hash
from nodes.clearing.recovery import presence_key
from nodes.clearing.store import bucket_entries, encode, latest_entries, stored_final
from tests.clearing.platform import Platform
from tests.polling import eventually


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
    # 6 MB of entries that the server pushes ahead of a slow reader (paced by the consumer's flow
    # control): the reader must still get every entry, each once
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


def _logged_at(log: str, message: str) -> datetime | None:
    """When the node first logged `message` (its `ts=` field), or None."""
    for line in log.splitlines():
        if f'msg="{message}"' in line:
            return datetime.fromisoformat(line.split("ts=", 1)[1].split(" ", 1)[0].replace("Z", "+00:00"))
    return None


async def test_an_instance_scanning_a_big_bucket_keeps_saying_it_is_alive(fresh: Platform) -> None:
    """A scan reads one record per saga ever placed; with enough of them it outlasts the lease, and an
    instance that wrote no presence meanwhile looked gone to its peers, whose own scans then silenced them
    in turn. Presence is written on a task of its own, so it keeps coming through the scan."""
    js = fresh.nc.jetstream()
    await ensure_named(js, streams=(), buckets=(SAGAS_BUCKET, SAGA_INDEX_BUCKET))
    # an index entry: an empty index would make clearing index every record before it serves
    await (await js.key_value(SAGA_INDEX_BUCKET)).put("scan.00000000000000000001.old-0", b"")
    blob = _record(SagaStatus.COMPLETED)
    for start in range(0, 80_000, 2_000):
        acks = [await js.publish_async(f"$KV.{SAGAS_BUCKET}.old-{i}", blob) for i in range(start, start + 2_000)]
        await asyncio.gather(*acks)
    await fresh.start("wallet")
    proc = await fresh.start("clearing", QT_SAGA_LEASE_S="1")
    presence = await js.key_value(PRESENCE_BUCKET)
    key = presence_key(f"{socket.gethostname()}:{proc.pid}")
    written: list[int] = []

    async def scanned() -> datetime | None:
        with contextlib.suppress(KeyNotFoundError):
            at_ms = int(msgpack.unpackb((await presence.get(key)).value)["at_ms"])
            if not written or written[-1] != at_ms:
                written.append(at_ms)
        return _logged_at(proc.log_path.read_text(), "sagas scanned")

    done: datetime | None = await eventually(scanned, lambda at: at is not None, timeout_s=60, every_s=0.05,
                                             what="the first scan")
    began = _logged_at(proc.log_path.read_text(), "clearing serving")
    assert done is not None and began is not None
    assert (done - began).total_seconds() > 1.0  # the scan outlasted the lease
    during = [at for at in written if began.timestamp() * 1000 - 1000 <= at <= done.timestamp() * 1000]
    assert len(during) >= 3, written
    assert max(b - a for a, b in itertools.pairwise(during)) < 1000, during  # never silent for a lease
