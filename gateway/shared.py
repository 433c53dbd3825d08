"""Limits shared by the gateway's worker processes: token buckets and open-connection counts in one
memory-mapped file, every read-modify-write under an `flock` of that file.

The kernel drops a dead worker's `flock`, so a killed worker never leaves the table locked. Connection
counts are kept per worker slot (a column per worker), and the supervisor zeroes a slot's column as soon as
its worker exits: the sockets a dead worker held died with it, so their places are free again at once.
`time.monotonic()` is the system-wide CLOCK_MONOTONIC on Linux, so every worker refills buckets on one clock.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

from gateway.ratelimit import Decision, TokenBucket
from gateway.settings import MAX_WORKERS

#: Slots per table: a bucket or a count per key (client IP or account).
SLOTS: Final = 1 << 15
#: Slots looked at from a key's home slot before the table is considered full there.
PROBE: Final = 32
_BUCKET: Final = struct.Struct("<Qdd")  # key digest, tokens, stamp
_DIGEST: Final = struct.Struct("<Q")
_COUNTS: Final = struct.Struct(f"<Q{MAX_WORKERS}i")  # key digest, open connections per worker slot
#: The four tables, in file order.
IP_BUCKETS: Final = 0
ACCOUNT_BUCKETS: Final = 1
IP_SOCKETS: Final = 2
ACCOUNT_SOCKETS: Final = 3
_REGIONS: Final = (_BUCKET.size, _BUCKET.size, _COUNTS.size, _COUNTS.size)
FILE_SIZE: Final = SLOTS * sum(_REGIONS)


def digest(key: str) -> int:
    """A key's 64-bit digest, the same in every process (`hash()` is salted per process); never 0 (empty)."""
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "little") or 1


class SharedFile:
    """The mapped file: created (zeroed) by the gateway's supervisor, opened by each worker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR)
        self.map = mmap.mmap(self.fd, FILE_SIZE)

    @staticmethod
    def create(path: Path) -> None:
        """A fresh, empty (all zero) table file, private to the gateway's user."""
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.ftruncate(fd, FILE_SIZE)  # sparse: pages are only allocated as keys are written
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def locked(self) -> Iterator[mmap.mmap]:
        """The map, held exclusively across the worker processes (held for microseconds: no await inside)."""
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            yield self.map
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)

    def region(self, index: int) -> int:
        """Byte offset of table `index` (see `_REGIONS`)."""
        return SLOTS * sum(_REGIONS[:index])


def _find(view: mmap.mmap, base: int, size: int, key: int, reusable: Callable[[int], bool]) -> int | None:
    """The offset of `key`'s slot, else of a slot it may take (empty, or `reusable`), else None.

    Slots are never emptied (a key further along its probe run would become unreachable), so a search
    stops at the first empty slot: the key is not past it.
    """
    home = key % SLOTS
    spare = None
    for step in range(PROBE):
        offset = base + ((home + step) % SLOTS) * size
        (found,) = _DIGEST.unpack_from(view, offset)
        if found == key:
            return offset
        if found == 0:
            return spare if spare is not None else offset
        if spare is None and reusable(offset):
            spare = offset
    return spare


class SharedLimiter:
    """`Limiter`'s contract (a token bucket per key, created full) over a table every worker shares."""

    def __init__(self, file: SharedFile, table: int, rate: float, burst: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.file = file
        self.base = file.region(table)
        self.rate = rate
        self.burst = burst
        self.clock = clock

    def take(self, key: str) -> Decision:
        """Spend one of `key`'s tokens, whichever worker spent the others."""
        wanted, now = digest(key), self.clock()
        with self.file.locked() as view:

            def full(offset: int) -> bool:  # a full bucket is what a forgotten one comes back as
                return self._tokens(view, offset, now) >= self.burst

            offset = _find(view, self.base, _BUCKET.size, wanted, full)
            if offset is None:  # every slot near home is a spent bucket: forget the least spent one
                offset = max((self.base + ((wanted + s) % SLOTS) * _BUCKET.size for s in range(PROBE)),
                             key=lambda o: self._tokens(view, o, now))
            bucket = TokenBucket(self.rate, self.burst, now)
            found, tokens, stamp = _BUCKET.unpack_from(view, offset)
            if found == wanted:
                bucket.tokens, bucket.stamp = tokens, stamp
            decision = bucket.take(now)
            _BUCKET.pack_into(view, offset, wanted, bucket.tokens, bucket.stamp)
        return decision

    def _tokens(self, view: mmap.mmap, offset: int, now: float) -> float:
        _, tokens, stamp = _BUCKET.unpack_from(view, offset)
        return float(tokens + (now - stamp) * self.rate)


class SharedCounts:
    """Open connections per key summed over every worker; this worker changes only its own column."""

    def __init__(self, file: SharedFile, table: int, worker: int) -> None:
        if not 0 <= worker < MAX_WORKERS:
            raise ValueError(f"worker slot must be in [0, {MAX_WORKERS}), got {worker}")
        self.file = file
        self.base = file.region(table)
        self.worker = worker

    def clear_own(self) -> None:
        """Zero this worker slot's column (its process exited: what it counted died with it)."""
        column = 8 + 4 * self.worker
        with self.file.locked() as view:
            for slot in range(SLOTS):
                offset = self.base + slot * _COUNTS.size
                if _DIGEST.unpack_from(view, offset)[0]:
                    struct.pack_into("<i", view, offset + column, 0)

    def take(self, key: str, limit: int) -> bool:
        """Count one more connection of `key` unless all workers together already have `limit` (or the
        table has no room near its slot: refused, like a full cap)."""
        wanted = digest(key)
        with self.file.locked() as view:
            offset = _find(view, self.base, _COUNTS.size, wanted, lambda o: sum(_COUNTS.unpack_from(view, o)[1:]) == 0)
            if offset is None:
                return False
            found, *counts = _COUNTS.unpack_from(view, offset)
            if found != wanted:
                counts = [0] * MAX_WORKERS
            if sum(counts) >= limit:
                return False
            counts[self.worker] += 1
            _COUNTS.pack_into(view, offset, wanted, *counts)
        return True

    def give_back(self, key: str) -> None:
        """One connection of `key` on this worker ended."""
        wanted = digest(key)
        with self.file.locked() as view:
            offset = _find(view, self.base, _COUNTS.size, wanted, lambda _: False)
            if offset is None:
                return
            found, *counts = _COUNTS.unpack_from(view, offset)
            if found == wanted and counts[self.worker] > 0:
                counts[self.worker] -= 1
                _COUNTS.pack_into(view, offset, wanted, *counts)


class Shared:
    """What one worker shares with the others: the limits table (its slot's count column) and the directory
    prometheus_client keeps every worker's metric values in."""

    def __init__(self, file: SharedFile, slot: int, metrics_dir: Path) -> None:
        self.file = file
        self.slot = slot
        self.metrics_dir = metrics_dir

    @classmethod
    def attach(cls, run_dir: Path, slot: int) -> Shared:
        """Open the supervisor's run dir as worker `slot`."""
        return cls(SharedFile(run_dir / "limits"), slot, run_dir / "metrics")

    def limiter(self, table: int, rate: float, burst: float) -> SharedLimiter:
        """Token buckets of table `IP_BUCKETS` or `ACCOUNT_BUCKETS`."""
        return SharedLimiter(self.file, table, rate, burst)

    def counts(self, table: int) -> SharedCounts:
        """Connection counts of table `IP_SOCKETS` or `ACCOUNT_SOCKETS`, in this worker's column."""
        return SharedCounts(self.file, table, self.slot)

    def forget(self) -> None:
        """Zero this slot's connection counts: the supervisor calls it when the slot's worker exited, since
        every socket that worker held died with it."""
        for table in (IP_SOCKETS, ACCOUNT_SOCKETS):
            SharedCounts(self.file, table, self.slot).clear_own()
