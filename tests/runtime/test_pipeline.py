"""The pipelined publisher behind EXEC, the wallet relay and clearing's KV writes: a batch's acks are
awaited together, a refusal fails the batch, re-sending a batch is safe (per-message msg-ids), and a
long batch goes as a JetStream atomic batch without changing any of that."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from contracts.subjects import BucketSpec
from mesh.jetstream import ensure_bucket
from nodes.runtime.pipeline import ATOMIC_MAX, ATOMIC_MIN, PipelinedPublisher, PublishFailed


async def test_a_batch_is_stored_once_even_when_sent_twice(own_nc: Client) -> None:
    js = own_nc.jetstream()
    await js.add_stream(StreamConfig(name="PIPE", subjects=["pipe.>"], duplicate_window=60.0))
    publisher = PipelinedPublisher(own_nc)
    batch = [("pipe.a", f"m{i}".encode(), {"Nats-Msg-Id": f"id-{i}"}) for i in range(300)]

    await publisher.publish(batch)
    await publisher.publish(batch[:100])  # a retry after an unknown outcome

    info = await js.stream_info("PIPE")
    assert info.state.messages == 300
    assert (await js.get_msg("PIPE", 300)).data == b"m299"  # in the order sent


async def test_a_message_no_stream_takes_fails_the_batch(own_nc: Client) -> None:
    publisher = PipelinedPublisher(own_nc, timeout_s=5.0)

    with pytest.raises(PublishFailed):
        await publisher.publish([("nostream.a", b"x", {"Nats-Msg-Id": "x1"})])


async def test_a_long_batch_goes_atomically_and_a_resend_is_stored_once(own_nc: Client) -> None:
    js = own_nc.jetstream()
    await js.add_stream(StreamConfig(name="ATOM", subjects=["atom.>"], duplicate_window=60.0, allow_atomic=True))
    publisher = PipelinedPublisher(own_nc)
    batch = [("atom.a", f"m{i}".encode(), {"Nats-Msg-Id": f"id-{i}"}) for i in range(ATOMIC_MAX + 200)]

    await publisher.publish_atomic(batch)  # one atomic batch of ATOMIC_MAX, then one of 200
    await publisher.publish_atomic(batch[:ATOMIC_MIN + 5])  # a retry: refused as atomic (stored ids), sent plain

    info = await js.stream_info("ATOM")
    assert info.state.messages == len(batch)
    assert (await js.get_msg("ATOM", len(batch))).data == f"m{len(batch) - 1}".encode()  # in the order sent
    first = await js.get_msg("ATOM", 1)
    assert (first.headers or {}).get("Nats-Batch-Id"), "the first batch did not go atomically"


async def test_a_stream_without_atomic_batches_still_takes_a_long_batch(own_nc: Client) -> None:
    js = own_nc.jetstream()
    await js.add_stream(StreamConfig(name="PLAIN", subjects=["plain.>"], duplicate_window=60.0))
    batch = [("plain.a", f"m{i}".encode(), {"Nats-Msg-Id": f"id-{i}"}) for i in range(ATOMIC_MIN * 2)]

    await PipelinedPublisher(own_nc).publish_atomic(batch)

    assert (await js.stream_info("PLAIN")).state.messages == len(batch)


async def test_one_failed_compare_and_set_fails_only_its_own_write_of_an_atomic_batch(own_nc: Client) -> None:
    js = own_nc.jetstream()
    await ensure_bucket(js, BucketSpec(name="cas", description="test"))
    kv = await js.key_value("cas")
    taken = await kv.put("k3", b"already")
    writes = [(f"$KV.cas.k{i}", b"v", {"Nats-Expected-Last-Subject-Sequence": "0"}) for i in range(ATOMIC_MIN + 8)]

    acks = await PipelinedPublisher(own_nc).publish_each_atomic(writes)

    assert acks[3] is not None and acks[3]["error"]["err_code"] == 10071  # wrong last sequence
    for i, ack in enumerate(acks):
        if i != 3:
            assert ack is not None and "error" not in ack, ack
            assert (await kv.get(f"k{i}")).revision == ack["seq"]
    assert (await kv.get("k3")).revision == taken


async def test_an_atomic_batch_of_kv_writes_answers_each_with_its_revision(own_nc: Client) -> None:
    js = own_nc.jetstream()
    await ensure_bucket(js, BucketSpec(name="revs", description="test"))
    kv = await js.key_value("revs")
    await kv.put("before", b"x")
    writes = [(f"$KV.revs.k{i}", f"v{i}".encode(), {}) for i in range(ATOMIC_MIN + 8)]

    acks = await PipelinedPublisher(own_nc).publish_each_atomic(writes)

    for i, ack in enumerate(acks):
        assert ack is not None and "error" not in ack, ack
        entry = await kv.get(f"k{i}")
        assert entry.revision == ack["seq"] and entry.value == f"v{i}".encode()
        stored = await js.get_msg("KV_revs", ack["seq"])
        assert (stored.headers or {}).get("Nats-Batch-Id"), "the batch did not go atomically"
