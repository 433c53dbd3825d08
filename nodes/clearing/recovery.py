"""Finds sagas whose driver is gone and drives them on.

An instance reads the `sagas` bucket whole when it starts and again whenever another clearing
instance goes quiet: every instance writes its presence to `clearing_presence` and reads the others'
every sweep. (It used to watch every write to `sagas`, one delivery and decode per saga write in
every instance: about a tenth of clearing's CPU per saga, for sagas that almost never need it.)
A saga found not final is claimed once its lease lapsed, or once its driver is known gone (a dead
process of this host, or the instance that went quiet), with a compare-and-set on its revision, so
of two instances that try, one wins.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

import msgpack
from nats.js.client import JetStreamContext
from nats.js.kv import KeyValue

from contracts.clearing import FINAL_STATUSES, SagaRecord
from contracts.subjects import PRESENCE_BUCKET, SAGAS_BUCKET
from nodes.clearing.runner import SagaRunner, claimable
from nodes.clearing.store import SagaConflict, bucket_entries, decode, latest_entries, stored_final
from nodes.runtime.lease import process_gone
from nodes.runtime.log import kv

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Open:
    """A saga not final as last read: who drove it and until when."""

    owner: str
    lease_until_ms: int
    adopt: bool = False
    """Its create failed in this instance, so no task drives it: claimed as soon as it is readable, and
    looked for until the lease that create gave it lapses (an unanswered write may still land)."""


def presence_key(owner: str) -> str:
    """An instance id (`host:pid`) as a KV key (which allows no `:`)."""
    return re.sub(r"[^-_=a-zA-Z0-9]", "_", owner)


def peers_lost(seen: Mapping[str, int], alive: Mapping[str, int], before: Mapping[str, int],
               handled: set[str]) -> tuple[set[str], set[str]]:
    """The instances to scan for now, and the new `handled`: listed but not alive (quiet, or a dead
    process of this host) or alive before and no longer listed (a clean stop deletes its entry), each
    once per loss; one that comes back alive leaves `handled`, so its next loss counts again."""
    lost = ((set(seen) - set(alive)) | (set(before) - set(seen))) - handled
    return lost, (handled | lost) & (set(seen) - set(alive))


def _gone(owner: str) -> bool:
    host, _, pid = owner.rpartition(":")
    return pid.isdigit() and process_gone(host, int(pid))


class Recovery:
    """Scans for unfinished sagas when needed and takes over the abandoned ones."""

    def __init__(self, runner: SagaRunner, js: JetStreamContext, presence: KeyValue, *, every_s: float = 1.0,
                 lease_s: float = 15.0) -> None:
        self.runner = runner
        self.js = js
        self.presence = presence
        self.every_s = every_s
        self.lease_s = lease_s
        self.open: dict[str, _Open] = {}
        """Sagas not final, driven elsewhere, as last read."""
        self.peers: dict[str, int] = {}
        """Other clearing instances' ids -> when (wall ms) each last said it was alive, as last read."""
        self.handled: set[str] = set()
        """Instances listed but not alive whose loss already caused a scan (one scan per loss)."""
        self._tasks: set[asyncio.Task[None]] = set()

    async def run(self, stop: asyncio.Event) -> None:
        """Say this instance is alive, look at the others, scan when one went quiet, claim; until `stop`."""
        scan_due = True
        # On a task of its own: a scan of a big bucket outlasts a lease, and an instance silent that long
        # would make every peer scan too (and each peer's scan silence it in turn).
        announcing = asyncio.create_task(self._announce_until(stop), name="presence")
        try:
            while not stop.is_set():
                try:
                    scan_due = await self._peers_gone() or scan_due
                    if scan_due:
                        await self._scan()
                        scan_due = False
                    await self._sweep()
                except Exception as exc:  # JetStream did not answer (a leader election): next round
                    log.warning("saga recovery round failed", extra=kv(error=repr(exc)))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.every_s)
        finally:
            announcing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await announcing  # its last write goes out before the delete below
            for task in list(self._tasks):
                task.cancel()
            with contextlib.suppress(Exception):
                await self.presence.delete(presence_key(self.runner.owner))

    async def _announce_until(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.announce()
            except Exception as exc:  # JetStream did not answer (a leader election): the next one may
                log.warning("clearing presence not written", extra=kv(error=repr(exc)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.lease_s / 3)

    async def announce(self) -> None:
        """Say this instance is alive (before it serves: a peer must know of it before its first saga)."""
        value = {"owner": self.runner.owner, "at_ms": int(time.time() * 1000)}
        await self.presence.put(presence_key(self.runner.owner), msgpack.packb(value))

    async def _peers_gone(self) -> bool:
        """Read the other instances' presence; True when one that was there went quiet or died."""
        now_ms = int(time.time() * 1000)
        seen: dict[str, int] = {}
        for _, blob in await latest_entries(self.js, PRESENCE_BUCKET):
            with contextlib.suppress(Exception):
                value = msgpack.unpackb(blob, raw=False)
                if value["owner"] != self.runner.owner:
                    seen[str(value["owner"])] = int(value["at_ms"])
        alive = {owner: at for owner, at in seen.items() if now_ms - at <= self.lease_s * 1000 and not _gone(owner)}
        lost, self.handled = peers_lost(seen, alive, self.peers, self.handled)
        self.peers = alive
        if lost:
            log.info("clearing instance gone: scanning its sagas", extra=kv(instances=",".join(sorted(lost))))
        return bool(lost)

    async def _scan(self) -> None:
        """Read every saga record; remember those not final that this instance does not drive."""
        found = read = 0
        async for key, blob in bucket_entries(self.js, SAGAS_BUCKET):
            read += 1
            if not blob or key in self.runner.driving or stored_final(blob):
                continue
            try:
                saga = decode(blob)
            except Exception as exc:  # one unreadable record must not stop recovering the others
                log.error("saga record unreadable", extra=kv(saga=key, error=repr(exc)))
                continue
            if saga.status not in FINAL_STATUSES:
                self.open[saga.saga_id] = _Open(saga.owner, saga.lease_until_ms)
                found += 1
        log.info("sagas scanned", extra=kv(read=read, open=found))

    async def _sweep(self) -> None:
        now_ms = int(time.time() * 1000)
        lease_end = now_ms + int(self.lease_s * 1000)
        while self.runner.dropped:  # its writes were ours: look at it once the lease they gave it lapsed
            # (not before: a write whose ack was lost may still become readable on the replica asked)
            self.open.setdefault(self.runner.dropped.pop(), _Open(self.runner.owner, lease_end))
        while self.runner.failed_creates:
            self.open[self.runner.failed_creates.pop()] = _Open(self.runner.owner, lease_end, adopt=True)
        for saga_id, seen in list(self.open.items()):
            if saga_id in self.runner.driving:
                continue
            if seen.lease_until_ms >= now_ms and not seen.adopt and not _gone(seen.owner):
                continue  # its lease runs and its driver may be alive: not claimable yet
            try:
                await self._try_claim(saga_id, seen, now_ms)
            except Exception as exc:  # JetStream did not answer (a leader election): next sweep
                log.warning("saga claim failed", extra=kv(saga=saga_id, error=repr(exc)))

    async def _try_claim(self, saga_id: str, seen: _Open, now_ms: int) -> None:
        got = await self.runner.store.get(saga_id)
        if got is None:
            if not (seen.adopt and seen.lease_until_ms >= now_ms):  # else: not readable yet, look again
                self.open.pop(saga_id, None)
            return
        saga, revision = got
        if saga.status in FINAL_STATUSES:
            self.open.pop(saga_id, None)
            return
        # an adopted saga still owned by this instance is driven by none of its tasks (`driving` says so)
        adopted = seen.adopt and saga.owner == self.runner.owner
        if not (adopted or claimable(saga, self.runner.owner, now_ms)):
            self.open[saga_id] = _Open(saga.owner, saga.lease_until_ms)
            return
        previous = saga.owner
        try:
            revision = await self.runner.claim(saga, revision)
        except SagaConflict:
            return  # another instance was faster; the next read finds it driven or final
        self.open.pop(saga_id, None)
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
