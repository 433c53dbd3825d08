"""Ephemeral push consumers that tail a stream (the matching journal, TRADES) and a server that forgets
them: a restarted nats-server keeps its streams but not an ephemeral in-memory consumer, and the
client's re-sent SUB then waits for messages that never come. On a cluster a tail's consumer is
replicated like its stream: an R1 consumer whose server died would neither deliver nor answer for
itself (its info times out), so the tail would wait forever."""

from __future__ import annotations

import asyncio
from typing import Any

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError


async def consumer_exists(sub: Any) -> bool:
    """False only when the server says the consumer is gone (a restarted server forgets it)."""
    try:
        await sub.consumer_info()
    except NotFoundError:
        return False
    except Exception:  # disconnected or slow: the subscription resumes by itself after a reconnect
        return True
    return True


async def until_consumer_lost(sub: Any, every_s: float) -> None:
    """Return once the server no longer knows `sub`'s consumer, checking every `every_s` seconds."""
    while True:
        await asyncio.sleep(every_s)
        if not await consumer_exists(sub):
            return


async def stream_replicas(js: JetStreamContext, stream: str) -> int:
    """How many servers keep `stream`: the replicas a tail's consumer of it is given."""
    return (await js.stream_info(stream)).config.num_replicas or 1
