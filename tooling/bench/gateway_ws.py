"""`qt bench gateway`, WebSocket fan-out: subscribers on one book, the engine's feed driven at fixed rates.

The book of `SYMBOL` (no saga touches it) changes through `matching.submit` / `matching.cancel` sent
straight to the engine over NATS: resting limit orders of one account a few ticks either side of the
reference, and cancels of the oldest of them, at a fixed schedule. Matching holds no funds, so no
wallet is involved; every command changes one level, and the engine publishes its L2 deltas on
`md.book.<SYMBOL>` (coalesced when it falls behind). The gateway mirrors that feed and sends every
subscriber an `update` frame per message.

Delay of a frame = when a subscriber's `recv()` returned it - when the tap process received the
`md.book` message with the same seq (a NATS hop after the engine published it: the moment the
gateway's own subscription receives it too). Both are CLOCK_MONOTONIC readings on this machine.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

import msgpack
from nats.aio.client import Client

from contracts.codec import loads
from contracts.instruments import instrument
from contracts.subjects import matching_subject
from tooling.bench.gateway_clients import SNAPSHOT, UPDATE, Feed, Frames
from tooling.bench.mesh import cpu_seconds, machine_busy_seconds
from tooling.bench.stats import percentile

SYMBOL = "MSFT"
SPEC = instrument(SYMBOL)
ACCOUNT = "fanout-mm"
RESTING = 200
"""Resting orders kept on the book: past this, every other command cancels the oldest one."""
BAND = 40
"""Resting orders sit 1..BAND ticks from the reference on their own side: the book never crosses."""


@dataclass
class Driven:
    """What the driver sent during one window."""

    rate: float
    started: float
    stopped: float
    sent: int = 0
    answered: int = 0
    errors: int = 0
    sent_at: dict[int, float] = field(default_factory=dict)
    """Journal seq of a command -> when the driver sent it."""
    late_s: float = 0.0
    """How far behind its schedule the driver's last send was."""


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
            return matching_subject("cancel"), msgpack.packb(
                {"order_id": order_id, "account": ACCOUNT, "instrument": SYMBOL}, use_bin_type=True)
        buy = self.n % 4 < 2
        offset = 1 + (self.n * 7) % BAND
        price = SPEC.reference_price - offset * SPEC.tick if buy else SPEC.reference_price + offset * SPEC.tick
        return matching_subject("submit"), msgpack.packb(
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
                driven.sent_at[int(reply["journal_seq"])] = sent
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
            driven.late_s = max(0.0, sent - scheduled)
            task = asyncio.create_task(one(subject, body, sent))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            driven.sent += 1
        driven.stopped = time.monotonic()
        if tasks:
            await asyncio.wait(set(tasks), timeout=60)
        return driven


@dataclass
class Usage:
    """CPU cores each process used over a window, and the rest of the machine."""

    cores: dict[str, float]
    others: float
    seconds: float


class CpuWatch:
    """CPU seconds of named PIDs (and the machine) between `start()` and `stop()`."""

    def __init__(self, pids: dict[str, list[int]]) -> None:
        self.pids = pids
        self._at = 0.0
        self._busy = 0.0
        self._cpu: dict[str, float] = {}

    def _now(self) -> dict[str, float]:
        return {name: sum(cpu_seconds(pid) for pid in pids) for name, pids in self.pids.items()}

    def start(self) -> None:
        """Mark the beginning."""
        self._cpu, self._busy, self._at = self._now(), machine_busy_seconds(), time.monotonic()

    def stop(self) -> Usage:
        """Cores used since `start()`."""
        cpu, busy, at = self._now(), machine_busy_seconds(), time.monotonic()
        wall = max(at - self._at, 1e-9)
        used = {name: cpu[name] - self._cpu.get(name, 0.0) for name in cpu}
        return Usage({name: s / wall for name, s in used.items()}, max(0.0, busy - self._busy - sum(used.values())) / wall,
                     wall)


@dataclass
class Window:
    """One fan-out rate step, analysed."""

    offered: float
    duration_s: float
    commands: int
    command_errors: int
    driver_late_s: float
    feed_messages: int
    """`md.book` messages the engine published for this window's commands."""
    level_changes: int
    subscribers: int
    """Connections open when the window started."""
    expected: int
    delivered: int
    snapshots: int
    """Snapshot frames received in the window (a gateway resync sends one to everyone)."""
    closed: list[tuple[int, float, int, str]]
    delays: list[float]
    """Frame received - feed message seen by the tap, per delivered update (sorted)."""
    from_send: list[float]
    """Frame received - the driver sent the command whose journal seq it carries (sorted)."""
    usage: Usage
    rss_max_kb: int = 0

    @property
    def feed_rate(self) -> float:
        """`md.book` messages (= update frames per subscriber) per second."""
        return self.feed_messages / self.duration_s if self.duration_s else 0.0

    @property
    def command_rate(self) -> float:
        """Commands answered per second."""
        return self.commands / self.duration_s if self.duration_s else 0.0

    def delay(self, q: float) -> float | None:
        """A quantile of the delivery delay."""
        return percentile(self.delays, q)

    def send_delay(self, q: float) -> float | None:
        """A quantile of order-sent-to-frame-received."""
        return percentile(self.from_send, q)


def analyse(driven: Driven, until: float, feed: Feed, frames: list[Frames], usage: Usage, connections: int,
            rss_max_kb: int) -> Window:
    """Join one window's feed messages (by seq) with every subscriber's frames; `until`: the next window's start."""
    window = {seq: at for seq, at in zip(feed.seq, feed.at, strict=True) if seq in driven.sent_at}
    changes = sum(n for seq, n in zip(feed.seq, feed.deltas, strict=True) if seq in window)
    delays: list[float] = []
    from_send: list[float] = []
    snapshots = closed_before = 0
    closed: list[tuple[int, float, int, str]] = []
    for f in frames:
        closed_before += sum(1 for _c, at, _code, _reason in f.closed if at < driven.started)
        closed += [entry for entry in f.closed if driven.started <= entry[1] < until]
        for seq, at, kind in zip(f.seq, f.at, f.kind, strict=True):
            if kind == SNAPSHOT:
                snapshots += driven.started <= at < until
                continue
            published = window.get(seq) if kind == UPDATE else None
            if published is None:
                continue
            delays.append(at - published)
            sent = driven.sent_at.get(seq)
            if sent is not None:
                from_send.append(at - sent)
    delays.sort()
    from_send.sort()
    live = connections - closed_before
    return Window(driven.rate, driven.stopped - driven.started, driven.answered, driven.errors, driven.late_s,
                  len(window), changes, live, len(window) * live, len(delays), snapshots, closed, delays, from_send,
                  usage, rss_max_kb)


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    """A process's resident set (or `VmHWM`, its peak) in kB, from /proc/<pid>/status; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


async def sample_rss(pid: int, peak: list[int], stop: asyncio.Event, every_s: float = 0.2) -> None:
    """Keep the largest VmRSS seen in `peak[0]` until `stop` is set."""
    while not stop.is_set():
        peak[0] = max(peak[0], rss_kb(pid))
        try:
            await asyncio.wait_for(stop.wait(), every_s)
        except TimeoutError:
            pass
