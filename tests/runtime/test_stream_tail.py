"""The one stream tail (matching journal, TRADES): in order, and resumed when the server forgets it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.api import StreamConfig

from contracts.credentials import nkey_seed_path
from nodes.runtime.tails import StreamTail
from tooling.natsserver import NatsServer


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


async def test_a_tail_that_subscribes_while_the_server_is_down_waits_for_it(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """A tail (re)subscribing while its server restarts or its cluster elects a leader keeps trying; before,
    the first unanswered consumer create raised out of `messages` and ended the node (market data)."""
    nc = await nats.connect(own_nats.url, nkeys_seed=str(nkey_seed_path(own_nats.data_dir, "ops")),
                            max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream(timeout=1)
        await js.add_stream(StreamConfig(name="DOWN", subjects=["down.>"]))
        await js.publish("down.a", b"m0")
        tail = StreamTail(js, "down.>", stream="DOWN", check_every_s=0.5, label="test")
        own_nats.stop()

        async def first() -> bytes:
            async with contextlib.aclosing(tail.messages(lambda: 1)) as messages:
                async for msg in messages:
                    return msg.data
            raise AssertionError("the tail ended")

        reading = asyncio.create_task(first())
        await asyncio.sleep(2.5)  # a consumer create times out in 1 s: several attempts fail meanwhile
        assert not reading.done(), reading

        await asyncio.to_thread(own_nats.start, log_path=tmp_path / "nats-server.log")
        assert await asyncio.wait_for(reading, 30) == b"m0"
    finally:
        await nc.close()
