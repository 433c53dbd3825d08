"""The single writer: queues commands and group-commits them on the event loop's own thread.

While one batch is being committed the next one accumulates (in the socket, then in the queue), so
under load a single fsync covers many commands; under no load a command commits alone with no added
delay. Batches run on the loop's thread: a writer thread beside it fought the loop for the GIL at
every SQLite call, and that cost more than the loop now spends waiting for each fsync
(BENCHMARKS.md). Only long jobs (a rebuild) run on a thread of their own, and batches wait for them.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from contracts.errors import ErrorCode, QtError
from nodes.wallet.store import Command, EventStore, Outcome

T = TypeVar("T")
_Item = tuple[Command, str | None, asyncio.Future[Outcome]]


class Writer:
    """Owns an `EventStore`; every call that touches it runs in turn, never two at once."""

    def __init__(self, store: EventStore, *, max_batch: int = 1024) -> None:
        self.store = store
        self.max_batch = max_batch
        self.committed = asyncio.Event()
        self.commits = 0
        """Transactions committed so far (one per batch): commands / commits is the group-commit factor."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="wallet-aside")
        self._queue: asyncio.Queue[_Item | None] = asyncio.Queue()
        self._turn = asyncio.Lock()
        """Held by a job running aside: batches and calls wait for it (taking it free never yields)."""
        self._closed = False

    async def submit(self, command: Command, traceparent: str | None = None) -> Outcome:
        """Queue a command and wait until its batch is durable."""
        if self._closed:
            raise QtError(ErrorCode.UNAVAILABLE, "wallet writer is closed")
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((command, traceparent, future))
        return await future

    async def submit_many(self, commands: list[Command], traceparent: str | None = None) -> list[Outcome]:
        """Queue several commands at once (so they share a group commit) and wait until all are durable;
        a store failure becomes that command's refusal, not the others'."""
        if self._closed:
            raise QtError(ErrorCode.UNAVAILABLE, "wallet writer is closed")
        if not commands:
            return []
        loop = asyncio.get_running_loop()
        futures: list[asyncio.Future[Outcome]] = []
        for command in commands:
            future: asyncio.Future[Outcome] = loop.create_future()
            self._queue.put_nowait((command, traceparent, future))
            futures.append(future)
        await asyncio.wait(futures)
        return [_outcome(future) for future in futures]

    async def call(self, fn: Callable[..., T], *args: object) -> T:
        """Run a short `fn(*args)` on the store between batches, on the loop's thread."""
        async with self._turn:
            return fn(*args)

    async def call_aside(self, fn: Callable[..., T], *args: object) -> T:
        """Run a long `fn(*args)` (a rebuild) on a thread of its own, the loop free meanwhile;
        batches and calls wait until it returns."""
        async with self._turn:
            return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _execute(self, batch: list[_Item]) -> list[Outcome]:
        return self.store.execute_batch([(c, t) for c, t, _ in batch])

    async def run(self) -> None:
        """Commit batches until `close()`; a batch SQLite refuses for a reason other than its own state
        (I/O, disk full, locked) is retried command by command, so a poisoned command fails alone."""
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.max_batch and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    self._queue.put_nowait(None)  # finish this batch, then stop
                    break
                batch.append(item)
            try:
                outcomes = await self.call(self._execute, batch)
            except Exception as exc:
                if len(batch) == 1 or isinstance(exc, sqlite3.OperationalError):  # the store, not a command
                    for _, _, future in batch:
                        _fail(future, exc)
                else:  # one poisoned command must not fail its neighbours: commit each alone
                    await self._one_by_one(batch)
                continue
            self.commits += 1
            _resolve(batch, outcomes)
            self.committed.set()

    async def _one_by_one(self, batch: list[_Item]) -> None:
        for item in batch:
            try:
                outcomes = await self.call(self._execute, [item])
            except Exception as exc:
                _fail(item[2], exc)
                continue
            self.commits += 1
            _resolve([item], outcomes)
            self.committed.set()

    async def close(self) -> None:
        """Refuse new commands, let queued ones commit, then release the thread."""
        self._closed = True
        self._queue.put_nowait(None)

    def shutdown(self) -> None:
        """Release the thread of the jobs run aside once `run()` has returned."""
        self._executor.shutdown(wait=True)


def _resolve(batch: list[_Item], outcomes: list[Outcome]) -> None:
    for (_, _, future), outcome in zip(batch, outcomes, strict=True):
        if not future.done():
            future.set_result(outcome)


def _outcome(future: asyncio.Future[Outcome]) -> Outcome:
    exc = future.exception()
    if exc is None:
        return future.result()
    return Outcome(None, exc if isinstance(exc, QtError) else QtError(ErrorCode.INTERNAL, "internal error"))


def _fail(future: asyncio.Future[Outcome], exc: Exception) -> None:
    """A store failure: SQLite's operational errors (I/O, disk full, locked) may pass, so the caller
    may retry (`unavailable`); anything else would fail the same way again (`internal`)."""
    code = ErrorCode.UNAVAILABLE if isinstance(exc, sqlite3.OperationalError) else ErrorCode.INTERNAL
    if not future.done():
        future.set_exception(QtError(code, f"wallet store failed: {exc}"[:200]))
