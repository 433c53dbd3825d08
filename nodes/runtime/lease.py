"""Single-owner leases in the `leases` KV bucket: create wins, renewals are compare-and-set.

The bucket's TTL expires a lease whose owner stopped renewing; the revision at acquisition is the
fencing token. A restarted owner on the same host and data dir whose old process is gone takes its
lease back at once instead of waiting for the TTL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from nats.js.errors import KeyNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from nodes.runtime.client import is_transient
from nodes.runtime.log import kv

log = logging.getLogger(__name__)


#: Pause between renewal attempts the server did not answer.
RETRY_S = 0.25


class LeaseLost(Exception):
    """Another owner holds the lease now; the holder must stop acting on the partition."""


@dataclass
class Lease:
    """Ownership of `key` in the leases bucket for as long as `keep()` renews it."""

    bucket: KeyValue
    key: str
    data_dir: Path
    ttl_s: float = 10.0
    owner: str = field(default_factory=lambda: uuid.uuid4().hex)
    revision: int = 0
    token: int = 0
    renewed_at: float = 0.0
    """`time.monotonic()` of the last successful create or renew."""

    def _value(self) -> bytes:
        return json.dumps({
            "owner": self.owner, "host": socket.gethostname(), "pid": os.getpid(),
            "data_dir": str(self.data_dir.resolve()),
        }).encode()

    async def acquire(self, stop: asyncio.Event | None = None, poll_s: float = 0.5) -> int:
        """Wait until the lease is ours; returns the fencing token. A bucket that does not answer (a
        cluster electing its leader, a server restarting) is waited for, not a reason to exit."""
        waiting_logged = False
        while stop is None or not stop.is_set():
            try:
                if await self._try_acquire():
                    return self.token
            except Exception as exc:
                if not is_transient(exc):
                    raise
                log.warning("lease bucket not answering; retrying", extra=kv(key=self.key, error=repr(exc)))
                await asyncio.sleep(poll_s)
                continue
            if not waiting_logged:
                log.info("lease held elsewhere; standing by", extra=kv(key=self.key))
                waiting_logged = True
            await asyncio.sleep(poll_s)
        raise asyncio.CancelledError

    async def _try_acquire(self) -> bool:
        """One attempt: create the key, or take back what an earlier attempt or a dead process of ours
        holds; False while someone else holds it."""
        try:
            self.revision = await self.bucket.create(self.key, self._value())
            self.token = self.revision
            self.renewed_at = time.monotonic()
            return True
        except KeyWrongLastSequenceError:
            pass
        try:
            entry = await self.bucket.get(self.key)
        except KeyNotFoundError:  # released or expired between the two calls: create again at once
            return await self._try_acquire()
        holder = json.loads(entry.value) if entry.value else {}
        # ours: an earlier create whose answer was lost (sent while reconnecting) landed after all; when is
        # unknown, so it is renewed (CAS) before it counts, like a dead process's lease taken back
        mine = isinstance(holder, dict) and holder.get("owner") == self.owner
        if mine or (isinstance(holder, dict) and _orphaned(holder, self.data_dir)):
            try:
                self.revision = await self.bucket.update(self.key, self._value(), last=entry.revision)
            except KeyWrongLastSequenceError:
                return False
            self.token = self.revision
            self.renewed_at = time.monotonic()
            log.info("lease taken back", extra=kv(key=self.key, reason="own lost create" if mine else "dead process"))
            return True
        return False

    async def renew(self) -> None:
        """Extend the lease; raises `LeaseLost` when someone else took it."""
        try:
            self.revision = await self.bucket.update(self.key, self._value(), last=self.revision)
        except KeyWrongLastSequenceError:
            # Our previous renewal may have been written with its answer lost (a server died, a
            # cluster elected a new leader): the entry is then still ours, at a newer revision.
            self.revision = await self._own_revision()
            try:
                self.revision = await self.bucket.update(self.key, self._value(), last=self.revision)
            except KeyWrongLastSequenceError:
                raise LeaseLost(self.key) from None
        self.renewed_at = time.monotonic()

    async def _own_revision(self) -> int:
        """The entry's revision when it is still ours; else `LeaseLost`."""
        try:
            entry = await self.bucket.get(self.key)
        except KeyNotFoundError:
            raise LeaseLost(self.key) from None
        holder = json.loads(entry.value) if entry.value else {}
        if not isinstance(holder, dict) or holder.get("owner") != self.owner:
            raise LeaseLost(self.key)
        return int(entry.revision or 0)

    def held(self) -> bool:
        """True while the lease surely has not expired: renewed within 80% of the TTL.

        A process that was paused (GC, SIGSTOP, a VM hiccup) finds this false on waking, before
        its renewal fails, and must not act on the partition until it has renewed.
        """
        return self.token > 0 and time.monotonic() - self.renewed_at < self.ttl_s * 0.8

    async def keep(self) -> None:
        """Renew every third of the TTL until cancelled or lost. A renewal the server did not answer (a
        reconnect, a cluster electing the bucket's new leader) is retried until the TTL has run out:
        meanwhile `held()` turns false at 80% of it, so the holder stops acting before anyone else can
        take over."""
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            while True:
                try:
                    await self.renew()
                    break
                except LeaseLost:
                    raise
                except Exception as exc:  # the server did not answer; the TTL decides how long to try
                    if time.monotonic() - self.renewed_at >= self.ttl_s:
                        raise LeaseLost(self.key) from exc
                    log.warning("lease renewal failed, retrying", extra=kv(key=self.key, error=repr(exc)))
                    await asyncio.sleep(RETRY_S)

    async def release(self) -> None:
        """Give the lease up so a standby can take it at once."""
        try:
            await self.bucket.delete(self.key, last=self.revision)
        except Exception as exc:  # best effort: the TTL frees it anyway
            log.warning("lease release failed", extra=kv(key=self.key, error=repr(exc)))


def _orphaned(holder: dict[str, object], data_dir: Path) -> bool:
    """True when the holder ran on this host with this data dir and its process is gone."""
    if holder.get("data_dir") != str(data_dir.resolve()):
        return False
    host, pid = holder.get("host"), holder.get("pid")
    return isinstance(host, str) and isinstance(pid, int) and process_gone(host, pid)


def process_gone(host: str, pid: int) -> bool:
    """True when `pid` ran on this host and no longer exists; a process we may not signal is alive."""
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
