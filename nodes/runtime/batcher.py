"""Smart batching (LMAX style): one batch in flight per destination; what queues meanwhile goes in the next.

No timer: a request that finds nothing in flight is sent at once (the next loop turn) as a batch of
one, so at low load a batch adds no latency; under load every request that arrived while a batch
was travelling shares the next message (and whatever durable write the other side makes per message).
A destination that gains nothing from bigger batches but must not make a request wait behind an
unrelated one (JetStream, which fsyncs each message anyway) may allow a few batches in flight.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any, Generic, TypeVar

from prometheus_client import CollectorRegistry, Gauge, Histogram

from nodes.runtime.log import kv

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

#: Sends one batch and answers one result (or the exception that item failed with) per item, in order.
#: Raising fails every item of the batch with that exception.
SendBatch = Callable[[list[Item]], Coroutine[Any, Any, Sequence["Result | BaseException"]]]

#: Batch sizes worth telling apart (1 = no batching happened).
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class BatchMetrics:
    """`qt_batch_items{batcher}` (items per batch sent) and `qt_batch_waiting{batcher}` (items queued
    or in flight), on a node's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.items = Histogram("qt_batch_items", "Items per batch sent", ["batcher"], buckets=SIZE_BUCKETS,
                               registry=registry)
        self.waiting = Gauge("qt_batch_waiting", "Items queued or in flight", ["batcher"], registry=registry)


class SmartBatcher(Generic[Item, Result]):
    """Queues items for one destination and sends them through `send`, one batch in flight at a time."""

    def __init__(self, name: str, send: SendBatch[Item, Result], *, max_batch: int, max_in_flight: int = 1,
                 metrics: BatchMetrics | None = None) -> None:
        if max_batch < 1 or max_in_flight < 1:
            raise ValueError("max_batch and max_in_flight must be >= 1")
        self.name = name
        self.max_batch = max_batch
        self.max_in_flight = max_in_flight
        self._send = send
        self._queue: list[tuple[Item, asyncio.Future[Result], contextvars.Context]] = []
        self._senders = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self._in_flight = 0
        self._metrics = metrics
        if metrics is not None:
            metrics.waiting.labels(name).set_function(lambda: len(self._queue) + self._in_flight)

    @property
    def waiting(self) -> int:
        """Items queued or in flight."""
        return len(self._queue) + self._in_flight

    async def submit(self, item: Item) -> Result:
        """Queue `item` and return its own result once the batch that carried it is answered."""
        return await self.enqueue(item)

    def enqueue(self, item: Item) -> asyncio.Future[Result]:
        """Queue `item` now (items enqueued in the same loop turn share a batch) and return its future."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        context = contextvars.copy_context()
        self._queue.append((item, future, context))
        if self._senders < self.max_in_flight:
            self._senders += 1  # counted here and uncounted by the sender itself: no window where both miss
            sender = asyncio.create_task(self._drain(context), name=f"batcher-{self.name}", context=context)
            self._tasks.add(sender)
            sender.add_done_callback(self._tasks.discard)
        return future

    async def _drain(self, own: contextvars.Context) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue[:self.max_batch], self._queue[self.max_batch:]
                self._in_flight += len(batch)
                try:
                    await self._one(batch, own)
                finally:
                    self._in_flight -= len(batch)
        finally:
            self._senders -= 1

    async def _one(self, batch: list[tuple[Item, asyncio.Future[Result], contextvars.Context]],
                   own: contextvars.Context) -> None:
        if self._metrics is not None:
            self._metrics.items.labels(self.name).observe(len(batch))
        try:
            # Sent in the context of the batch's first caller: its trace carries the batch (a batch of one
            # is exactly the call it replaces). The sender runs in its starter's context, so a batch that
            # starter leads goes out at once; another needs a task of its own for its context.
            send = self._send([item for item, _, _ in batch])
            results = await (send if batch[0][2] is own else asyncio.create_task(send, context=batch[0][2]))
            if len(results) != len(batch):
                raise RuntimeError(f"{self.name}: {len(results)} results for {len(batch)} items")
        except BaseException as exc:
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):  # cancelled (shutdown): the waiters got it too
                raise
            log.debug("batch failed", extra=kv(batcher=self.name, items=len(batch), error=repr(exc)))
            return
        for (_, future, _), result in zip(batch, results, strict=True):
            if future.done():  # its waiter gave up (cancelled): the item was still sent
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)
