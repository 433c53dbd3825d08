"""`qt bench gateway`, WebSocket fan-out windows: fresh subscribers and tap, a feed at one rate, every frame joined.

Each window starts its own tap and subscriber processes (`tooling.bench.gateway_clients`), so a window
always begins with every subscriber connected and snapshotted, whatever the previous one closed. It
drives the feed (`tooling.bench.gateway_ws`), waits for the gateway to go idle (its queues drained),
reads the gateway's memory, stops the clients by PID and joins their recordings by feed seq.

Book channels conflate: a lagging connection gets one `update` spanning what it missed, or a `snapshot`,
so a frame's seq says which feed messages it brings the connection past. Staleness of feed seq s for
one connection = when the first frame (update or snapshot) with seq >= s arrived - when s was published
(the bench's own publish time for the synthetic feed; for the engine's, when the tap received it, one
NATS hop after the engine's publish). All are CLOCK_MONOTONIC readings, one clock for the machine.
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
from tooling.bench.gateway_ws import SYMBOL, CpuWatch, Driven, Usage, sample_rss
from tooling.bench.mesh import Child, Mesh, rss_kb, tree_cpu_seconds
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
    """`md.book` messages published for this window's load: the book seqs every subscriber must reach."""
    level_changes: int
    subscribers: int
    """Connections open when the load started."""
    connect_s: float
    expected: int
    """(connection, feed seq) pairs: feed messages x connections open at the start."""
    delivered: int
    """Pairs a frame (update or snapshot) brought the connection to or past."""
    updates: int
    """Update frames received after the load started."""
    snapshots: int
    """Snapshot frames after the load started (conflation for a lagging reader, or a resync)."""
    closed: list[tuple[int, float, int, str]]
    delays: list[float]
    """Staleness per delivered pair: frame received - the seq's publish (sorted)."""
    from_send: list[float]
    """Frame received - its cause left the bench process, per (connection, cause) (sorted)."""
    usage: Usage
    rss_max_kb: int
    rss_end_kb: int
    delivery_s: float = 0.0
    """From the first feed message to the last frame that brought a connection forward."""
    drained: bool = True
    """The gateway went idle after the load (False: the wait gave up, frames may still have been queued)."""
    published_by_bench: bool = False
    """Staleness starts at the bench's own publish (synthetic feed), not at the tap's receipt (engine feed)."""

    @property
    def frames(self) -> int:
        """Book frames received after the load started, updates and snapshots."""
        return self.updates + self.snapshots

    @property
    def delivered_rate(self) -> float:
        """Book frames received per second, from the first feed message to the last frame."""
        return self.frames / self.delivery_s if self.delivery_s > 0 else 0.0

    @property
    def feed_rate(self) -> float:
        """`md.book` messages per second."""
        return self.feed_messages / self.duration_s if self.duration_s else 0.0

    @property
    def command_rate(self) -> float:
        """Commands answered (or messages published) per second."""
        return self.commands / self.duration_s if self.duration_s else 0.0

    @property
    def dropped(self) -> int:
        """Connections the gateway closed during the window."""
        return len(self.closed)

    def delay(self, q: float) -> float | None:
        """A quantile of the staleness."""
        return percentile(self.delays, q)

    def send_delay(self, q: float) -> float | None:
        """A quantile of cause-sent-to-frame-received."""
        return percentile(self.from_send, q)


def first_covering(seqs: list[int], frames: list[tuple[int, float]]) -> list[float | None]:
    """For each seq of an ascending list, when the first frame with seq >= it arrived (None: no frame did).

    `frames` is one connection's (seq, arrival) in arrival order; a frame behind one already seen brings
    nothing new.
    """
    out: list[float | None] = [None] * len(seqs)
    k = 0
    for seq, at in frames:
        while k < len(seqs) and seqs[k] <= seq:
            out[k] = at
            k += 1
        if k == len(seqs):
            break
    return out


def staleness(published: dict[int, float], connections: list[list[tuple[int, float]]]) -> tuple[list[float], float]:
    """Per (connection, seq) the first frame covering the seq minus its publish time, sorted; and the last
    arrival that covered anything (0.0: none)."""
    seqs = sorted(published)
    delays: list[float] = []
    last = 0.0
    for frames in connections:
        for seq, at in zip(seqs, first_covering(seqs, frames), strict=True):
            if at is not None:
                delays.append(at - published[seq])
                last = max(last, at)
    delays.sort()
    return delays, last


def analyse(driven: Driven, feed: Feed, frames: list[Frames], connections: int, *, connect_s: float, usage: Usage,
            rss_max_kb: int, rss_end_kb: int, drained: bool = True) -> Window:
    """Join one window's feed messages (by seq) with every subscriber's book frames."""
    tapped = dict(zip(feed.seq, feed.at, strict=True))
    if driven.published:  # the synthetic feed: the bench itself published, at these times
        window = {seq: at for seq, at in driven.published.items() if seq in tapped}
    else:  # the engine's feed: a message is this window's if it arrived after the first command left
        window = {seq: at for seq, at in tapped.items() if at >= driven.started}
    changes = sum(n for seq, n in zip(feed.seq, feed.deltas, strict=True) if seq in window)
    updates = snapshots = closed_before = 0
    closed: list[tuple[int, float, int, str]] = []
    per_connection: list[list[tuple[int, float]]] = []
    for f in frames:
        closed_before += sum(1 for _c, at, _code, _reason in f.closed if at < driven.started)
        closed += [entry for entry in f.closed if entry[1] >= driven.started]
        mine: dict[int, list[tuple[int, float]]] = {}
        for conn, seq, at, kind in zip(f.conn, f.seq, f.at, f.kind, strict=True):
            if at < driven.started:
                continue
            snapshots += kind == SNAPSHOT
            updates += kind == UPDATE
            mine.setdefault(conn, []).append((seq, at))
        per_connection += mine.values()
    delays, last = staleness(window, per_connection)
    from_send, _ = staleness(driven.sent_at, per_connection)
    live = connections - closed_before
    return Window(source=driven.source, offered=driven.rate, duration_s=driven.stopped - driven.started,
                  commands=driven.answered, command_errors=driven.errors, driver_late_s=driven.late_s,
                  feed_messages=len(window), level_changes=changes, subscribers=live, connect_s=connect_s,
                  expected=len(window) * live, delivered=len(delays), updates=updates, snapshots=snapshots,
                  closed=closed, delays=delays, from_send=from_send, usage=usage, rss_max_kb=rss_max_kb,
                  rss_end_kb=rss_end_kb, delivery_s=max(0.0, last - min(window.values(), default=last)),
                  drained=drained, published_by_bench=bool(driven.published))


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
        before = tree_cpu_seconds({"gateway": pid})["gateway"]  # its worker processes too
        await asyncio.sleep(0.5)
        if tree_cpu_seconds({"gateway": pid})["gateway"] - before < below * 0.5:
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
