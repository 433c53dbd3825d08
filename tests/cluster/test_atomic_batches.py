"""Atomic batches on R3 streams: what clearing's KV writes and the relay rely on holds on a cluster too
(a committed batch at consecutive sequences, each write's revision derived from the commit ack)."""

from __future__ import annotations

from nats.js.api import RawStreamMsg
from nats.js.client import JetStreamContext

from contracts.subjects import BUSTS_BUCKET
from nodes.runtime.pipeline import ATOMIC_MIN, PipelinedPublisher
from tests.clearing.platform import Platform


async def leader_get(js: JetStreamContext, key: str) -> RawStreamMsg:
    """A key's latest value as the stream's leader has it: `kv.get` is a direct get, which any replica may
    answer, and a follower can still be behind the write just acknowledged."""
    return await js.get_last_msg(f"KV_{BUSTS_BUCKET}", f"$KV.{BUSTS_BUCKET}.{key}")


async def test_an_atomic_batch_of_kv_writes_on_r3_answers_each_write_with_its_revision(cluster: Platform) -> None:
    js = cluster.nc.jetstream()
    assert (await js.stream_info(f"KV_{BUSTS_BUCKET}")).config.num_replicas == 3
    kv = await js.key_value(BUSTS_BUCKET)
    taken = await kv.put("r3-k5", b"already")
    writes = [(f"$KV.{BUSTS_BUCKET}.r3-k{i}", f"v{i}".encode(), {"Nats-Expected-Last-Subject-Sequence": "0"})
              for i in range(ATOMIC_MIN + 8)]
    publisher = PipelinedPublisher(cluster.nc)

    refused_one = await publisher.publish_each_atomic(writes)  # one compare-and-set loses: sent one by one
    assert refused_one[5] is not None and "error" in refused_one[5]
    assert (await leader_get(js, "r3-k5")).seq == taken
    again = [(subject.replace("r3-k", "r3-again-"), value, headers) for subject, value, headers in writes]
    committed = await publisher.publish_each_atomic(again)

    for answers, prefix in ((refused_one, "r3-k"), (committed, "r3-again-")):
        for i, ack in enumerate(answers):
            if prefix == "r3-k" and i == 5:
                continue
            assert ack is not None and "error" not in ack, ack
            entry = await leader_get(js, f"{prefix}{i}")
            assert entry.seq == ack["seq"] and entry.data == f"v{i}".encode()
    first = committed[0]
    assert first is not None
    stored = await js.get_msg(f"KV_{BUSTS_BUCKET}", first["seq"])
    assert (stored.headers or {}).get("Nats-Batch-Id"), "the second batch did not go atomically"
