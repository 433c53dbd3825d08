"""`qt bench gateway`, WebSocket fan-out: what feeds the book channel, and the CPU and memory readings.

Two sources move `md.book.<SYMBOL>` (no saga touches `SYMBOL`):

- `BookDriver`, the engine: `matching.submit` / `matching.cancel` sent straight to the engine over
  NATS at a fixed schedule, resting limit orders of one account a few ticks either side of the
  reference and cancels of the oldest of them. Matching holds no funds, so no wallet is involved.
  The engine publishes the L2 deltas of what it applied since its last publish, so under load one
  feed message carries several commands: the feed rate is the engine's, not the offered one.
- `SyntheticFeed`: this process publishes `md.book` messages itself at exactly the offered rate,
  continuing the sequence and the book of the engine's last snapshot (the one the gateway's mirror
  loaded), one level change each, with the contract's checksum. The gateway cannot tell them from
  the engine's; they measure its fan-out at a rate the engine does not reach on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import zlib
from collections import deque
from dataclasses import dataclass, field

import msgpack
from nats.aio.client import Client

from contracts.codec import loads
from contracts.instruments import instrument
from contracts.subjects import MatchingEndpoint, book_feed_subject, matching_subject
from mesh.rpc import call
from tooling.bench.mesh import cpu_seconds, machine_busy_seconds, rss_kb, tree_cpu_seconds

SYMBOL = "MSFT"
SPEC = instrument(SYMBOL)
ACCOUNT = "fanout-mm"
RESTING = 200
"""Resting orders the engine driver keeps on the book: past this, every other command cancels the oldest."""
BAND = 40
"""Orders (and synthetic levels) sit 1..BAND ticks from the reference on their own side: the book never crosses."""


@dataclass
class Driven:
    """What the driver sent during one window."""

    rate: float
    started: float
    stopped: float
    sent: int = 0
    answered: int = 0
    errors: int = 0
    source: str = "engine"
    sent_at: dict[int, float] = field(default_factory=dict)
    """Seq a cause brings the book to -> when the earliest such cause left this process: a command's
    `journal_seq` (one journal batch carries several commands, which share it) or a synthetic message's seq."""
    published: dict[int, float] = field(default_factory=dict)
    """Feed seq -> when this process published it (the synthetic feed only; the engine's is timed by the tap)."""
    late_s: float = 0.0
    """How far behind its schedule the driver's last send was."""

    def caused(self, seq: int, sent: float) -> None:
        """A cause sent at `sent` brought the book to `seq`: keep the earliest (a journal batch's commands
        share its seq, and its feed message is stale from the first of them)."""
        self.sent_at[seq] = min(sent, self.sent_at.get(seq, sent))


class BookDriver:
    """Keeps `RESTING` orders on the book and changes one level per command, at a fixed schedule."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.resting: deque[str] = deque()
        self.n = 0

    def _command(self) -> tuple[str, bytes]:
        self.n += 1
        if self.n % 2 == 0 and len(self.resting) >= RESTING:
            order_id = self.resting.popleft()
            return matching_subject(SYMBOL, MatchingEndpoint.CANCEL), msgpack.packb(
                {"order_id": order_id, "account": ACCOUNT, "instrument": SYMBOL}, use_bin_type=True)
        buy = self.n % 4 < 2
        offset = 1 + (self.n * 7) % BAND
        price = SPEC.reference_price - offset * SPEC.tick if buy else SPEC.reference_price + offset * SPEC.tick
        return matching_subject(SYMBOL, MatchingEndpoint.SUBMIT), msgpack.packb(
            {"order_id": f"fan-{self.n}", "account": ACCOUNT, "instrument": SYMBOL, "side": "BUY" if buy else "SELL",
             "type": "LIMIT", "tif": "GTC", "price": price, "qty": SPEC.min_qty}, use_bin_type=True)

    async def drive(self, rate: float, duration_s: float) -> Driven:
        """Send commands at `rate` for `duration_s` without waiting for replies, then wait for them."""
        interval = 1.0 / rate
        total = int(duration_s * rate)
        t0 = time.monotonic() + 0.01
        driven = Driven(rate, t0, t0 + duration_s)
        tasks: set[asyncio.Task[None]] = set()

        async def one(subject: str, body: bytes, sent: float) -> None:
            try:
                reply = loads((await self.nc.request(subject, body, timeout=30)).data)
                driven.caused(int(reply["journal_seq"]), sent)
                if subject.endswith("submit") and reply.get("status") == "new":
                    self.resting.append(str(reply["order_id"]))
                driven.answered += 1
            except Exception:
                driven.errors += 1

        for k in range(total):
            scheduled = t0 + k * interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            subject, body = self._command()
            sent = time.monotonic()
            driven.late_s = max(driven.late_s, sent - scheduled)
            task = asyncio.create_task(one(subject, body, sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            driven.sent += 1
        driven.stopped = time.monotonic()
        if tasks:
            await asyncio.wait(set(tasks), timeout=60)
        return driven


def checksum(bids: dict[int, int], asks: dict[int, int]) -> int:
    """The book contract's checksum: CRC32 of the top 10 asks ascending then the top 10 bids descending,
    each level `<price><total>` in integer units."""
    top = [f"{p}{asks[p]}" for p in sorted(asks)[:10]] + [f"{p}{bids[p]}" for p in sorted(bids, reverse=True)[:10]]
    text = "".join(top)
    return zlib.crc32(text.encode("ascii"))


class SyntheticFeed:
    """Publishes `md.book` messages at a fixed rate, continuing the engine's last published state."""

    def __init__(self, nc: Client) -> None:
        self.nc = nc
        self.rng = random.Random(11)

    async def drive(self, rate: float, duration_s: float) -> Driven:
        """Read the engine's book (what the gateway's mirror loaded), then one level change per message."""
        book = await call(self.nc, matching_subject(SYMBOL, MatchingEndpoint.BOOK),
                          {"instrument": SYMBOL, "depth": 500}, timeout=10)
        bids = {int(p): int(q) for p, q in book["bids"]}
        asks = {int(p): int(q) for p, q in book["asks"]}
        if checksum(bids, asks) != book["checksum"]:
            raise RuntimeError("this bench's book checksum disagrees with the engine's: fix `checksum` first")
        seq = int(book["seq"])
        subject = book_feed_subject(SYMBOL)
        interval = 1.0 / rate
        total = int(duration_s * rate)
        t0 = time.monotonic() + 0.01
        driven = Driven(rate, t0, t0 + duration_s, source="synthetic")
        for k in range(total):
            scheduled = t0 + k * interval
            delay = scheduled - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            buy = self.rng.random() < 0.5
            offset = self.rng.randint(1, BAND) * SPEC.tick
            price = SPEC.reference_price - offset if buy else SPEC.reference_price + offset
            levels = bids if buy else asks
            qty = self.rng.randint(0, 20) * SPEC.min_qty
            if qty:
                levels[price] = qty
            else:
                levels.pop(price, None)
            prev, seq = seq, seq + 1
            body = msgpack.packb({"instrument": SYMBOL, "seq": seq, "prev_seq": prev, "checksum": checksum(bids, asks),
                                  "deltas": [("BUY" if buy else "SELL", price, qty)]})
            sent = time.monotonic()
            await self.nc.publish(subject, body)
            driven.sent_at[seq] = driven.published[seq] = sent
            driven.late_s = max(driven.late_s, sent - scheduled)
            driven.sent += 1
            driven.answered += 1
        await self.nc.flush()
        driven.stopped = time.monotonic()
        return driven


@dataclass
class Usage:
    """CPU cores each process used over a window, and the rest of the machine."""

    cores: dict[str, float]
    others: float
    seconds: float


class CpuWatch:
    """CPU seconds of named PIDs (and the machine) between `start()` and `stop()`; `-pid`: its main thread only."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self._at = 0.0
        self._busy = 0.0
        self._cpu: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        # a negative pid names a process's main thread (its event loop) alone; a positive one the process
        # and its descendants (the gateway's worker processes)
        whole = tree_cpu_seconds({str(pid): pid for pids in self.pids.values() for pid in pids if pid > 0})
        return {name: sum(whole[str(pid)] if pid > 0 else cpu_seconds(-pid, -pid) for pid in pids)
                for name, pids in self.pids.items()}

    def start(self) -> None:
        """Mark the beginning."""
        self._cpu, self._busy, self._at = self._now(), machine_busy_seconds(), time.monotonic()

    def stop(self) -> Usage:
        """Cores used since `start()`."""
        cpu, busy, at = self._now(), machine_busy_seconds(), time.monotonic()
        wall = max(at - self._at, 1e-9)
        used = {name: cpu[name] - self._cpu.get(name, 0.0) for name in cpu}
        ours = sum(seconds for name, seconds in used.items() if all(pid > 0 for pid in self.pids[name]))
        others = max(0.0, busy - self._busy - ours) / wall
        return Usage({name: s / wall for name, s in used.items()}, others, wall)


async def sample_rss(pid: int, peak: list[int], stop: asyncio.Event, every_s: float = 0.2) -> None:
    """Keep the largest VmRSS seen in `peak[0]` until `stop` is set."""
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kb(pid))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)
