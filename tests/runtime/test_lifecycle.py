"""The one wait every node's serve() ends on: a stop, or the first of its tasks to end."""

from __future__ import annotations

import asyncio

from nodes.runtime.lifecycle import until_stopped


async def test_a_stop_reports_no_failure_and_leaves_the_tasks_running() -> None:
    stop = asyncio.Event()
    worker = asyncio.create_task(asyncio.Event().wait())
    stop.set()
    assert await until_stopped(stop, (worker,)) == []
    assert not worker.done()
    worker.cancel()


async def test_a_task_that_fails_ends_the_wait_with_its_name_and_error() -> None:
    async def fail() -> None:
        raise RuntimeError("lease lost")

    failing = asyncio.create_task(fail(), name="lease")
    failures = await until_stopped(asyncio.Event(), (failing,))
    assert [(name, repr(exc)) for name, exc in failures] == [("lease", repr(RuntimeError("lease lost")))]


async def test_a_task_that_ends_cleanly_or_is_cancelled_is_no_failure() -> None:
    async def finish() -> None:
        return None

    cancelled = asyncio.create_task(asyncio.Event().wait())
    cancelled.cancel()
    assert await until_stopped(asyncio.Event(), (cancelled,)) == []
    assert await until_stopped(asyncio.Event(), (asyncio.create_task(finish()),)) == []
