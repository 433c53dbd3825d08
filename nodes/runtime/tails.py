"""Ephemeral push consumers that tail a stream (the matching journal, TRADES) from a stream sequence on.

A plain push consumer without acks or flow control: nats.py answers flow-control requests from a task
that polls every 250 ms, which stalled an ordered consumer's live tail for that long. Gaps are found
here instead, by the consumer sequence, and heal by subscribing again from the first sequence not yet
applied. A restarted nats-server keeps its streams but forgets an ephemeral in-memory consumer, and the
client's re-sent SUB then waits for messages that never come: a watchdog notices and re-subscribes too.
On a cluster a tail's consumer is replicated like its stream: an R1 consumer whose server died would
neither deliver nor answer for itself (its info times out), so the tail would wait forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator, Callable
from typing import Any

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
from nats.js.errors import NotFoundError

from mesh.backoff import Backoff
from nodes.runtime.client import is_transient
from nodes.runtime.log import kv

log = logging.getLogger(__name__)

#: Between subscribe attempts the server did not answer.
SUBSCRIBE_RETRY = Backoff(initial_s=0.1, max_s=2.0)


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


class StreamTail:
    """Every message on `subject` in stream order, forever, each consumer sequence once: after a gap or
    a lost consumer it subscribes again from `start()` (the caller skips what it already applied)."""

    def __init__(self, js: JetStreamContext, subject: str, *, stream: str, check_every_s: float,
                 label: str) -> None:
        self.js = js
        self.subject = subject
        self.stream = stream
        self.check_every_s = check_every_s
        self.label = label
        self._sub: Any = None

    @property
    def buffered(self) -> int:
        """Messages delivered to this client and not yet taken (0: the tail is idle right now)."""
        return self._sub.pending_msgs if self._sub is not None else 0

    async def messages(self, start: Callable[[], int]) -> AsyncGenerator[Msg, None]:
        """Yield messages from stream sequence `start()` on; wrap in `contextlib.aclosing`."""
        while True:
            sub = self._sub = await self._subscribe(start())
            watchdog = asyncio.create_task(self._end_when_consumer_lost(sub))
            expected = 1
            try:
                async for msg in sub.messages:
                    got = msg.metadata.sequence.consumer
                    if got != expected:
                        log.warning("tail gap; re-subscribing", extra=kv(tail=self.label, expected=expected, got=got))
                        break
                    expected += 1
                    yield msg
            finally:
                watchdog.cancel()
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _end_when_consumer_lost(self, sub: Any) -> None:
        """Unsubscribing ends the loop above, which subscribes again (off the hot path: it only watches)."""
        await until_consumer_lost(sub, self.check_every_s)
        log.warning("tail consumer gone; re-subscribing", extra=kv(tail=self.label))
        with contextlib.suppress(Exception):
            await sub.unsubscribe()

    async def _subscribe(self, start: int) -> Any:
        """A consumer from `start`. A server that does not answer (restarting, a cluster electing the
        stream's leader) is waited for: raising here ended the node (market data, in the chaos test)."""
        delays = SUBSCRIBE_RETRY.delays()
        while True:
            try:
                config = ConsumerConfig(
                    deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start, ack_policy=AckPolicy.NONE,
                    flow_control=False, mem_storage=True, inactive_threshold=300.0,
                    num_replicas=await stream_replicas(self.js, self.stream),
                )
                return await self.js.subscribe(self.subject, stream=self.stream, config=config, manual_ack=True,
                                               pending_msgs_limit=-1, pending_bytes_limit=-1)
            except Exception as exc:  # a consumer created before a lost answer expires (inactive_threshold)
                if not is_transient(exc):
                    raise
                delay = next(delays)
                log.warning("tail subscribe failed, retrying", extra=kv(tail=self.label, start=start,
                                                                        error=repr(exc), delay_s=delay))
                await asyncio.sleep(delay)


async def stream_replicas(js: JetStreamContext, stream: str) -> int:
    """How many servers keep `stream`: the replicas a tail's consumer of it is given."""
    return (await js.stream_info(stream)).config.num_replicas or 1
