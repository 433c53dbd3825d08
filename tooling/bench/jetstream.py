"""JetStream publish acks/s under `sync_interval: always` (our nats.conf) and the default lazy `2m`."""

from __future__ import annotations

import asyncio
import time

from nats.aio.client import Client
from nats.js.api import StorageType, StreamConfig
from rich.console import Console

from tooling.bench.mesh import Mesh, client
from tooling.bench.stats import Run, fmt_ms, fmt_rate, rate_only, summarize

STREAM = "BENCH"
SUBJECT = "bench.js.events"
#: About the size of a msgpack wallet event (ids, two hashes, amounts).
PAYLOAD = bytes(range(256)) + b"x" * 64
WINDOW = 1000


async def sequential(nc: Client, duration_s: float, tag: str) -> Run:
    """One publish at a time, each awaiting its ack (what a caller that needs the ack sees)."""
    js = nc.jetstream()
    latencies: list[float] = []
    started = time.perf_counter()
    end = started + duration_s
    i = 0
    while time.perf_counter() < end:
        sent = time.perf_counter()
        await js.publish(SUBJECT, PAYLOAD, headers={"Nats-Msg-Id": f"{tag}-s-{i}"})
        latencies.append(time.perf_counter() - sent)
        i += 1
    return summarize("sequential", latencies, 0, time.perf_counter() - started)


async def pipelined(nc: Client, duration_s: float, tag: str) -> Run:
    """Windows of `WINDOW` `publish_async` calls, then wait for all acks (the outbox relay's shape)."""
    js = nc.jetstream()
    started = time.perf_counter()
    end = started + duration_s
    acked = 0
    i = 0
    while time.perf_counter() < end:
        futures = []
        for _ in range(WINDOW):
            futures.append(await js.publish_async(SUBJECT, PAYLOAD, headers={"Nats-Msg-Id": f"{tag}-p-{i}"}))
            i += 1
        await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
        acked += len(futures)
    return rate_only(f"publish_async x{WINDOW}", acked, time.perf_counter() - started)


async def bench_jetstream(mesh: Mesh, duration_s: float, console: Console) -> dict[tuple[str, str], Run]:
    """Both publish shapes against a server with `always` and one with `2m`; keyed (policy, shape)."""
    out: dict[tuple[str, str], Run] = {}
    for policy in ("always", "2m"):
        server = mesh.server(f"nats-js-{policy}", sync_interval=None if policy == "always" else policy)
        nc = await client(server)
        try:
            await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT],
                                                         storage=StorageType.FILE))
            await sequential(nc, min(0.5, duration_s), f"{policy}-warm")
            for shape, fn in (("sequential", sequential), ("pipelined", pipelined)):
                run = await fn(nc, duration_s, policy)
                out[(policy, shape)] = run
                console.print(f"  sync_interval {policy:>6} {shape:>10}: {fmt_rate(run.rate)}"
                              + (f"  p50 {fmt_ms(run.p50)}  p99 {fmt_ms(run.p99)}" if run.p50 else ""))
        finally:
            await nc.close()
            mesh.stop_server(server)
    return out
