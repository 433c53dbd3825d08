"""The pipelined publisher behind EXEC and the wallet relay: a batch's acks are awaited together, a
refusal fails the batch, and re-sending a batch is safe (per-message msg-ids)."""

from __future__ import annotations

import pytest
from nats.aio.client import Client
from nats.js.api import StreamConfig

from nodes.runtime.pipeline import PipelinedPublisher, PublishFailed


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
