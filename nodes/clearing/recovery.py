"""Finds sagas whose driver is gone and drives them on: on boot and every few seconds.

Every instance watches the `sagas` bucket and remembers the sagas that are not final; one whose
lease lapsed (or whose driver was a process of this host that died) is claimed with a
compare-and-set on its revision, so of two instances that try, one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.kv import KeyValue

from contracts.clearing import FINAL_STATUSES, SagaRecord
from nodes.clearing.runner import SagaRunner, claimable
from nodes.clearing.store import SagaConflict, decode
from nodes.runtime.log import kv

log = logging.getLogger(__name__)


class Recovery:
    """Watches for unfinished sagas and takes over the abandoned ones."""

    def __init__(self, runner: SagaRunner, bucket: KeyValue, *, every_s: float = 1.0) -> None:
        self.runner = runner
        self.bucket = bucket
        self.every_s = every_s
        self.open: dict[str, int] = {}
        """Saga id -> lease expiry (ms) of every saga not final, as last seen."""
        self.ready = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Watch and sweep until `stop`; the first sweep runs once the bucket's history is read."""
        watcher = await self.bucket.watchall()
        sweeper = asyncio.create_task(self._sweep(stop))
        try:
            while not stop.is_set():
                try:
                    entry = await watcher.updates(timeout=0.5)  # type: ignore[no-untyped-call]  # unannotated
                except NatsTimeoutError:
                    continue
                if entry is None:  # end of the initial values
                    self.ready.set()
                    continue
                if entry.value is None or entry.operation is not None:
                    self.open.pop(entry.key, None)
                    continue
                if entry.key in self.runner.driving:  # ours, in hand: no need to decode our own writes
                    continue
                saga = decode(entry.value)
                if saga.status in FINAL_STATUSES:
                    self.open.pop(saga.saga_id, None)
                else:
                    self.open[saga.saga_id] = saga.lease_until_ms
        finally:
            sweeper.cancel()
            with contextlib.suppress(Exception):
                await watcher.stop()  # type: ignore[no-untyped-call]  # nats.py leaves it unannotated
            for task in list(self._tasks):
                task.cancel()

    async def _sweep(self, stop: asyncio.Event) -> None:
        await self.ready.wait()
        while not stop.is_set():
            now_ms = int(time.time() * 1000)
            while self.runner.dropped:  # its writes were ours, skipped by the watch: look at it now
                self.open.setdefault(self.runner.dropped.pop(), 0)
            for saga_id in list(self.open):
                if saga_id not in self.runner.driving:
                    try:
                        await self._try_claim(saga_id, now_ms)
                    except Exception as exc:  # JetStream did not answer (a leader election): next sweep
                        log.warning("saga claim failed", extra=kv(saga=saga_id, error=repr(exc)))
            await asyncio.sleep(self.every_s)

    async def _try_claim(self, saga_id: str, now_ms: int) -> None:
        got = await self.runner.store.get(saga_id)
        if got is None:
            self.open.pop(saga_id, None)
            return
        saga, revision = got
        if saga.status in FINAL_STATUSES:  # a dropped saga whose final write landed after all
            self.open.pop(saga_id, None)
            return
        if not claimable(saga, self.runner.owner, now_ms):
            return
        previous = saga.owner
        try:
            revision = await self.runner.claim(saga, revision)
        except SagaConflict:
            return  # another instance was faster
        log.info("saga recovered", extra=kv(saga=saga_id, status=saga.status, previous_owner=previous))
        task = asyncio.create_task(self._drive(saga, revision))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drive(self, saga: SagaRecord, revision: int) -> None:
        try:
            await self.runner.drive(saga, revision)
        except SagaConflict:
            log.warning("saga taken over while recovering", extra=kv(saga=saga.saga_id))
        except Exception:
            log.exception("saga recovery failed", extra=kv(saga=saga.saga_id))
