"""The processes `qt bench gateway` runs beside the platform for its WebSocket fan-out point.

`subscribers`: N WebSocket connections to the gateway in one uvloop process, each subscribed to one
book channel; every frame is stamped with `time.monotonic()` (CLOCK_MONOTONIC: one clock for every
process on the machine) the moment its `recv()` returns. `tap`: one nats-py subscription to the
engine's `md.book.<instrument>` feed, stamping each message as it arrives, a NATS hop after the
engine's publish and at the same moment the gateway's own subscription receives it.

Both record until SIGTERM, then write what they saw to `--out` (a pickle of arrays and lists) and
exit; the bench reads it back with `load_frames` / `load_feed`. `--out` + `.ready` appears once they are set up.

    python -m tooling.bench.gateway_clients subscribers --url ws://... --channel book.MSFT --count 250 --out F
    python -m tooling.bench.gateway_clients tap --nats nats://... --seed ops.nk --subject md.book.MSFT --out F
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import pickle
import re
import signal
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
import nats
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

UPDATE, SNAPSHOT = 0, 1
#: The head of a gateway frame: `{"channel":"book.X","type":"update","seq":N,...` (its own key order).
HEAD = re.compile(r'^\{(?:"channel":"[^"]*",)?"type":"(\w+)"(?:,"seq":(\d+))?')
CONNECT_AT_ONCE = 25


@dataclass
class Frames:
    """Every book frame the subscribers received, one entry per frame, in arrival order."""

    conn: array[int] = field(default_factory=lambda: array("I"))
    seq: array[int] = field(default_factory=lambda: array("q"))
    at: array[float] = field(default_factory=lambda: array("d"))
    kind: array[int] = field(default_factory=lambda: array("b"))
    closed: list[tuple[int, float, int, str]] = field(default_factory=list)
    """(connection, time, close code, reason) of every connection that ended before the bench stopped it."""
    connected: int = 0
    other: int = 0
    """Frames that were neither a snapshot nor an update (heartbeats, acks)."""


@dataclass
class Feed:
    """Every `md.book` message the tap saw: its seq, prev_seq, number of level changes and arrival time."""

    seq: array[int] = field(default_factory=lambda: array("q"))
    prev: array[int] = field(default_factory=lambda: array("q"))
    deltas: array[int] = field(default_factory=lambda: array("I"))
    at: array[float] = field(default_factory=lambda: array("d"))


def load_frames(path: Path) -> Frames:
    """What a `subscribers` process wrote on exit."""
    return Frames(**_read(path))


def load_feed(path: Path) -> Feed:
    """What the `tap` process wrote on exit."""
    return Feed(**_read(path))


def _read(path: Path) -> dict[str, Any]:
    with open(path, "rb") as handle:
        fields: dict[str, Any] = pickle.load(handle)  # our own child's file, in our own temp dir
    return fields


def _write(path: Path, value: Frames | Feed) -> None:
    # plain fields, not the dataclass: the writer runs this module as __main__
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as handle:
        pickle.dump(dict(vars(value)), handle, protocol=pickle.HIGHEST_PROTOCOL)
    temp.rename(path)


def _mark_ready(out: Path, count: int) -> None:
    Path(f"{out}.ready").write_text(str(count))


def _stop_event() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def subscribers(url: str, channel: str, count: int, out: Path, compression: bool) -> None:
    """Open `count` connections, subscribe each to `channel`, record frames until SIGTERM."""
    stop = _stop_event()
    frames = Frames()
    gate = asyncio.Semaphore(CONNECT_AT_ONCE)
    ready = [asyncio.Event() for _ in range(count)]

    async def one(n: int) -> None:
        async with gate:
            ws = await connect(url, compression="deflate" if compression else None, ping_interval=None,
                               max_queue=None, open_timeout=60, close_timeout=1)
            await ws.send(f'{{"op":"subscribe","channel":"{channel}"}}')
        frames.connected += 1
        await _receive(ws, n, frames, ready[n], stop)

    tasks = [asyncio.create_task(one(n)) for n in range(count)]
    waiter = asyncio.ensure_future(asyncio.gather(*(event.wait() for event in ready)))
    done, _ = await asyncio.wait({waiter, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    failed = [task for task in done if task is not waiter and task.exception() is not None]
    if failed:
        raise RuntimeError(f"a subscriber failed to set up: {failed[0].exception()!r}")
    await waiter  # every connection got its snapshot (or closed, which `closed` records)
    _mark_ready(out, frames.connected)
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    _write(out, frames)


async def _receive(ws: ClientConnection, n: int, frames: Frames, ready: asyncio.Event, stop: asyncio.Event) -> None:
    try:
        while True:
            text = await ws.recv()
            at = time.monotonic()
            head = HEAD.match(text if isinstance(text, str) else text.decode())
            kind = head.group(1) if head else ""
            if kind in {"update", "snapshot"}:
                frames.conn.append(n)
                frames.seq.append(int(head.group(2)) if head and head.group(2) else -1)
                frames.at.append(at)
                frames.kind.append(UPDATE if kind == "update" else SNAPSHOT)
                ready.set()
            else:
                frames.other += 1
    except ConnectionClosed as exc:
        if not stop.is_set():
            code = exc.rcvd.code if exc.rcvd else 1006
            frames.closed.append((n, time.monotonic(), code, exc.rcvd.reason if exc.rcvd else "no close frame"))
    finally:
        ready.set()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(ws.close(), 1)


async def tap(url: str, seed: str, subject: str, out: Path) -> None:
    """Record every message on `subject` (the engine's L2 feed) until SIGTERM."""
    stop = _stop_event()
    feed = Feed()
    nc = await nats.connect(url, nkeys_seed=seed, name="qt-bench-tap", allow_reconnect=False)

    async def stamp(msg: Any) -> None:
        at = time.monotonic()
        body = msgpack.unpackb(msg.data, raw=False)
        feed.seq.append(int(body["seq"]))
        feed.prev.append(int(body["prev_seq"]))
        feed.deltas.append(len(body["deltas"]))
        feed.at.append(at)

    await nc.subscribe(subject, cb=stamp, pending_msgs_limit=-1, pending_bytes_limit=-1)
    await nc.flush()
    _mark_ready(out, 1)
    await stop.wait()
    await nc.close()
    _write(out, feed)


def main() -> None:
    """`python -m tooling.bench.gateway_clients subscribers|tap ...`."""
    parser = argparse.ArgumentParser(prog="python -m tooling.bench.gateway_clients")
    sub = parser.add_subparsers(dest="what", required=True)
    s = sub.add_parser("subscribers")
    s.add_argument("--url", required=True)
    s.add_argument("--channel", required=True)
    s.add_argument("--count", type=int, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--compression", action="store_true")
    t = sub.add_parser("tap")
    t.add_argument("--nats", required=True)
    t.add_argument("--seed", required=True)
    t.add_argument("--subject", required=True)
    t.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.what == "subscribers":
        uvloop.run(subscribers(args.url, args.channel, args.count, args.out, args.compression))
    else:
        uvloop.run(tap(args.nats, args.seed, args.subject, args.out))


if __name__ == "__main__":
    main()
