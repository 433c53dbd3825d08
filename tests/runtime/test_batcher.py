"""The smart batcher: one batch in flight, what queues meanwhile goes in the next, no timer; each item
gets its own result, and a failed send fails only the items it carried."""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Sequence

import pytest

from nodes.runtime.batcher import SmartBatcher


class Destination:
    """Answers each batch when the test lets it (an event per batch), recording what each carried."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.arrived = asyncio.Event()
        self.release = asyncio.Event()
        self.fail_next: Exception | None = None

    async def send(self, items: list[int]) -> Sequence[int | BaseException]:
        self.batches.append(items)
        self.arrived.set()
        await self.release.wait()
        self.release.clear()
        if self.fail_next is not None:
            exc, self.fail_next = self.fail_next, None
            raise exc
        return [ValueError(f"odd {i}") if i % 2 else i * 10 for i in items]


async def test_items_queued_while_a_batch_is_in_flight_share_the_next_one() -> None:
    dest = Destination()
    batcher: SmartBatcher[int, int] = SmartBatcher("t", dest.send, max_batch=100)

    first = batcher.enqueue(0)
    await dest.arrived.wait()  # batch [0] in flight
    rest = [batcher.enqueue(i) for i in (2, 4, 6)]
    assert batcher.waiting == 4
    dest.release.set()
    assert await first == 0
    dest.release.set()

    assert await asyncio.gather(*rest) == [20, 40, 60]
    assert dest.batches == [[0], [2, 4, 6]]
    assert batcher.waiting == 0


async def test_each_item_gets_its_own_result_or_error() -> None:
    dest = Destination()
    batcher: SmartBatcher[int, int] = SmartBatcher("t", dest.send, max_batch=100)
    dest.release.set()

    results = await asyncio.gather(batcher.enqueue(2), batcher.enqueue(3), return_exceptions=True)

    assert results[0] == 20 and isinstance(results[1], ValueError)
    assert dest.batches == [[2, 3]]  # enqueued in one loop turn: one batch


async def test_a_failed_send_fails_only_the_items_it_carried() -> None:
    dest = Destination()
    batcher: SmartBatcher[int, int] = SmartBatcher("t", dest.send, max_batch=100)
    dest.fail_next = ConnectionError("down")
    doomed = batcher.enqueue(0)
    await dest.arrived.wait()
    later = batcher.enqueue(2)
    dest.release.set()

    with pytest.raises(ConnectionError):
        await doomed
    dest.release.set()
    assert await later == 20


async def test_a_batch_carries_at_most_max_batch_items() -> None:
    dest = Destination()
    batcher: SmartBatcher[int, int] = SmartBatcher("t", dest.send, max_batch=2)
    futures = [batcher.enqueue(i * 2) for i in range(5)]
    for _ in range(3):
        await dest.arrived.wait()
        dest.arrived.clear()
        dest.release.set()
        await asyncio.sleep(0)

    assert await asyncio.gather(*futures) == [0, 20, 40, 60, 80]
    assert dest.batches == [[0, 2], [4, 6], [8]]


async def test_with_two_in_flight_a_new_item_does_not_wait_behind_a_batch_in_flight() -> None:
    dest = Destination()
    batcher: SmartBatcher[int, int] = SmartBatcher("t", dest.send, max_batch=100, max_in_flight=2)
    slow = batcher.enqueue(0)
    await dest.arrived.wait()
    dest.arrived.clear()

    fast = batcher.enqueue(2)
    await dest.arrived.wait()  # sent while [0] is still in flight

    assert dest.batches == [[0], [2]] and batcher.waiting == 2
    dest.release.set()
    await asyncio.wait([slow, fast], return_when=asyncio.FIRST_COMPLETED)
    dest.release.set()
    assert await asyncio.gather(slow, fast) == [0, 20]


async def test_an_item_queued_as_the_last_sender_finishes_is_still_sent() -> None:
    dest = Destination()
    dest.release.set()
    batcher: SmartBatcher[int, int] = SmartBatcher("t", dest.send, max_batch=100)

    for i in range(20):  # each enqueued right as the previous batch's sender ends (a hang guard, not a timing)
        async with asyncio.timeout(10):
            assert await batcher.enqueue(i * 2) == i * 20
        dest.release.set()


async def test_a_batch_is_sent_in_its_first_callers_context() -> None:
    caller: contextvars.ContextVar[str] = contextvars.ContextVar("caller", default="none")
    seen: list[str] = []

    async def send(items: list[int]) -> list[int]:
        seen.append(caller.get())
        return items

    batcher: SmartBatcher[int, int] = SmartBatcher("t", send, max_batch=100)

    async def call(name: str, item: int) -> int:
        caller.set(name)
        return await batcher.enqueue(item)

    assert await asyncio.gather(call("first", 1), call("second", 2)) == [1, 2]
    assert await call("third", 3) == 3
    assert seen == ["first", "third"]
