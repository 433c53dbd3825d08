"""The one stream tail (matching journal, TRADES): in order, and resumed when the server forgets it."""

from __future__ import annotations

import asyncio
import contextlib

from nats.aio.client import Client
from nats.js.api import StreamConfig

from nodes.runtime.tails import StreamTail


async def test_a_tail_resumes_from_the_first_unapplied_message_after_its_consumer_is_gone(own_nc: Client) -> None:
    js = own_nc.jetstream()
    await js.add_stream(StreamConfig(name="TAIL", subjects=["tail.>"]))
    for i in range(3):
        await js.publish("tail.a", f"m{i}".encode())
    applied: list[bytes] = []
    tail = StreamTail(js, "tail.>", stream="TAIL", check_every_s=0.05, label="test")

    async with asyncio.timeout(30), contextlib.aclosing(tail.messages(lambda: len(applied) + 1)) as messages:
        async for msg in messages:
            assert msg.metadata.sequence.stream == len(applied) + 1, "in stream order, each once"
            applied.append(msg.data)
            if len(applied) == 3:
                # what a restarted nats-server does: it keeps the stream and forgets the ephemeral consumer
                for consumer in await js.consumers_info("TAIL"):
                    await js.delete_consumer("TAIL", consumer.name)
                await js.publish("tail.a", b"m3")
            if len(applied) == 4:
                break

    assert applied == [b"m0", b"m1", b"m2", b"m3"]
