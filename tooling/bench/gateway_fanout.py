"""`qt bench gateway`, WebSocket fan-out windows: fresh subscribers and tap, a feed at one rate, every frame joined.

Each window starts its own tap and subscriber processes (`tooling.bench.gateway_clients`), so a window
always begins with every subscriber connected and snapshotted, whatever the previous one closed. It
drives the feed (`tooling.bench.gateway_ws`), waits for the gateway to go idle (its queues drained),
reads the gateway's memory, stops the clients by PID and joins their recordings by feed seq.

Delay of a frame = when a subscriber's `recv()` returned it - when the tap received the `md.book`
message with the same seq: one NATS hop after the publish, the moment the gateway's own subscription
receives it. Both are CLOCK_MONOTONIC readings, one clock for every process on this machine.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

from nats.aio.client import Client

from contracts.credentials import nkey_seed_path
from contracts.subjects import book_feed_subject
from tooling.bench.gateway_clients import SNAPSHOT, UPDATE, Feed, Frames, load_feed, load_frames
from tooling.bench.gateway_ws import SYMBOL, CpuWatch, Driven, Usage, rss_kb, sample_rss
from tooling.bench.mesh import Child, Mesh, cpu_seconds
from tooling.bench.stats import percentile
from tooling.natsserver import NatsServer

Drive = Callable[[float, float], Awaitable[Driven]]
DRAIN_MAX_S = 240.0
"""How long a window waits for the gateway to send what it queued."""


@dataclass
class Window:
    """One fan-out window, analysed."""

    source: str
    """`engine` (commands through matching) or `synthetic` (feed messages published by the bench)."""
    offered: float
    duration_s: float
    commands: int
    """Commands answered (engine) or messages published (synthetic)."""
    command_errors: int
    driver_late_s: float
    feed_messages: int
    """`md.book` messages published for this window's load (= update frames each subscriber should get)."""
    level_changes: int
    subscribers: int
    """Connections open when the load started."""
    connect_s: float
    expected: int
    delivered: int
    snapshots: int
    """Snapshot frames after the load started (a gateway resync sends one to everyone)."""
    closed: list[tuple[int, float, int, str]]
    delays: list[float]
    """Frame received - feed message seen by the tap, per delivered update (sorted)."""
    from_send: list[float]
    """Frame received - its cause left the bench process (sorted)."""
    usage: Usage
    rss_max_kb: int
    rss_end_kb: int
    delivery_s: float = 0.0
    """From the first feed message to the last update frame received."""
    drained: bool = True
    """The gateway went idle after the load (False: the wait gave up, frames may still have been queued)."""

    @property
    def delivered_rate(self) -> float:
        """Update frames received per second, from the first feed message to the last frame."""
        return self.delivered / self.delivery_s if self.delivery_s > 0 else 0.0

    @property
    def feed_rate(self) -> float:
        """`md.book` messages (= update frames per subscriber) per second."""
        return self.feed_messages / self.duration_s if self.duration_s else 0.0

    @property
    def command_rate(self) -> float:
        """Commands answered (or messages published) per second."""
        return self.commands / self.duration_s if self.duration_s else 0.0

    def delay(self, q: float) -> float | None:
        """A quantile of the delivery delay."""
        return percentile(self.delays, q)

    def send_delay(self, q: float) -> float | None:
        """A quantile of cause-sent-to-frame-received."""
        return percentile(self.from_send, q)


def analyse(driven: Driven, feed: Feed, frames: list[Frames], connections: int, *, connect_s: float, usage: Usage,
            rss_max_kb: int, rss_end_kb: int, drained: bool = True) -> Window:
    """Join one window's feed messages (by seq) with every subscriber's frames."""
    window = {seq: at for seq, at in zip(feed.seq, feed.at, strict=True) if seq in driven.sent_at}
    changes = sum(n for seq, n in zip(feed.seq, feed.deltas, strict=True) if seq in window)
    delays: list[float] = []
    from_send: list[float] = []
    snapshots = closed_before = 0
    last = driven.started
    closed: list[tuple[int, float, int, str]] = []
    for f in frames:
        closed_before += sum(1 for _c, at, _code, _reason in f.closed if at < driven.started)
        closed += [entry for entry in f.closed if entry[1] >= driven.started]
        for seq, at, kind in zip(f.seq, f.at, f.kind, strict=True):
            if kind == SNAPSHOT:
                snapshots += at >= driven.started
                continue
            published = window.get(seq) if kind == UPDATE else None
            if published is None:
                continue
            delays.append(at - published)
            last = max(last, at)
            sent = driven.sent_at.get(seq)
            if sent is not None:
                from_send.append(at - sent)
    delays.sort()
    from_send.sort()
    live = connections - closed_before
    return Window(source=driven.source, offered=driven.rate, duration_s=driven.stopped - driven.started,
                  commands=driven.answered, command_errors=driven.errors, driver_late_s=driven.late_s,
                  feed_messages=len(window), level_changes=changes, subscribers=live, connect_s=connect_s,
                  expected=len(window) * live, delivered=len(delays), snapshots=snapshots, closed=closed,
                  delays=delays, from_send=from_send, usage=usage, rss_max_kb=rss_max_kb, rss_end_kb=rss_end_kb,
                  delivery_s=last - min(window.values(), default=driven.started), drained=drained)


@dataclass
class Clients:
    """Where the client processes run and what they connect to."""

    mesh: Mesh
    server: NatsServer
    ws_url: str
    subscribers: int
    procs: int
    compression: bool
    gateway_pid: int
    pids: dict[str, int]
    """matching and nats-server, for the CPU table."""


async def window(clients: Clients, nc: Client, drive: Drive, rate: float, duration_s: float) -> Window:
    """Fresh tap and subscribers, the feed at `rate` for `duration_s`, the gateway drained, every frame joined."""
    mesh = clients.mesh
    root = mesh.fresh_dir("fanout")
    tap_out = root / "tap.pickle"
    tap = mesh.spawn("tap", ["-m", "tooling.bench.gateway_clients", "tap", "--nats", clients.server.url, "--seed",
                             str(nkey_seed_path(clients.server.data_dir, "ops")), "--subject",
                             book_feed_subject(SYMBOL), "--out", str(tap_out)], {})
    shares = [clients.subscribers // clients.procs + (k < clients.subscribers % clients.procs)
              for k in range(clients.procs)]
    outs = [root / f"subscribers-{k}.pickle" for k in range(clients.procs)]
    started = time.monotonic()
    procs = [mesh.spawn(f"subscribers-{k}", ["-m", "tooling.bench.gateway_clients", "subscribers", "--url",
                                             clients.ws_url, "--channel", f"book.{SYMBOL}", "--count", str(count),
                                             "--out", str(out), *(["--compression"] if clients.compression else [])],
                        {})
             for k, (count, out) in enumerate(zip(shares, outs, strict=True))]
    for path in (tap_out, *outs):
        await wait_file(Path(f"{path}.ready"), [tap, *procs], 180)
    connect_s = time.monotonic() - started
    gw = clients.gateway_pid
    await wait_idle(gw)
    watch = CpuWatch({"gateway": [gw], "subscribers": [p.proc.pid for p in procs],
                      "matching": [clients.pids["matching"]], "nats-server": [clients.pids["nats-server"]],
                      "driver": [os.getpid()], "tap": [tap.proc.pid]})
    peak, stop = [0], asyncio.Event()
    sampler = asyncio.create_task(sample_rss(gw, peak, stop))
    watch.start()
    driven = await drive(rate, duration_s)
    drained = await wait_idle(gw, max_s=DRAIN_MAX_S) < DRAIN_MAX_S
    usage = watch.stop()
    stop.set()
    await sampler
    rss_end = rss_kb(gw)
    for child in (*procs, tap):
        mesh.stop(child)
    return analyse(driven, load_feed(tap_out), [load_frames(out) for out in outs], clients.subscribers,
                   connect_s=connect_s, usage=usage, rss_max_kb=max(peak[0], rss_end), rss_end_kb=rss_end,
                   drained=drained)


async def wait_idle(pid: int, max_s: float = 60.0, below: float = 0.1) -> float:
    """Wait until `pid` uses under `below` cores over half a second (its queues drained); seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < max_s:
        before = cpu_seconds(pid)
        await asyncio.sleep(0.5)
        if cpu_seconds(pid) - before < below * 0.5:
            break
    return time.monotonic() - started


def _exists(path: Path) -> bool:
    return path.exists()


async def wait_file(path: Path, children: list[Child], timeout_s: float) -> None:
    """Wait for a client process's file, failing fast if one of them died."""
    deadline = time.monotonic() + timeout_s
    while not _exists(path):
        for child in children:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {path.name} after {timeout_s}s")
        await asyncio.sleep(0.1)
