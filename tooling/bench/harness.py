"""The request-reply client harness: closed loop (N sequential clients) and open loop (fixed rate).

The same harness drives the wallet and the echo peer, so the ratio between them is the cost of
the wallet's work, not of the client.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import replace

import typer
from nats.aio.client import Client
from nats.aio.msg import Msg

from tooling.bench.stats import Run, by_window, summarize

BodyFactory = Callable[[int, int], bytes]
"""`(client, i) -> payload` of the i-th request of a client; must be unique where it matters."""
Check = Callable[[Msg], bool]
"""Whether a reply is a success (e.g. no error header)."""
SubjectFactory = Callable[[int, int], str]
"""`(client, i) -> subject` of the i-th request of a client (e.g. the wallet partition of its account)."""
WINDOW_S = 1.0
"""The slices of schedule time an open loop's latencies are also summarized by (`Run.windows`)."""


def no_error(msg: Msg) -> bool:
    """A micro reply without the service error header."""
    return not (msg.headers and "Nats-Service-Error-Code" in msg.headers)


async def closed_loop(
    nc: Client, subject: str | SubjectFactory, body: BodyFactory, *, clients: int, duration_s: float,
    warmup_s: float, check: Check = no_error, timeout_s: float = 10.0, label: str = "",
) -> tuple[Run, int]:
    """`clients` coroutines each sending one request at a time; returns the run and all successes.

    Requests started during the warm-up are sent and counted as successes (they may have
    side effects) but not measured. `subject` may name each request's own subject.
    """
    latencies: list[float] = []
    counts = {"errors": 0, "ok_total": 0}
    start = time.perf_counter()
    measure_from = start + warmup_s
    end = measure_from + duration_s
    last_done = [end]

    async def one_client(c: int) -> None:
        i = 0
        while True:
            sent = time.perf_counter()
            if sent >= end:
                return
            payload = body(c, i)
            to = subject if isinstance(subject, str) else subject(c, i)
            i += 1
            try:
                ok = check(await nc.request(to, payload, timeout=timeout_s))
            except Exception:
                ok = False
            done = time.perf_counter()
            counts["ok_total"] += ok
            if sent >= measure_from:
                if ok:
                    latencies.append(done - sent)
                else:
                    counts["errors"] += 1
                last_done[0] = max(last_done[0], done)

    await asyncio.gather(*(one_client(c) for c in range(clients)))
    run = summarize(label or f"{clients} clients", latencies, counts["errors"], last_done[0] - measure_from)
    return run, counts["ok_total"]


async def open_loop(
    nc: Client, subject: str, body: BodyFactory, *, rate: float, duration_s: float,
    warmup_s: float, check: Check = no_error, timeout_s: float = 10.0, label: str = "",
) -> tuple[Run, int]:
    """Send at a fixed schedule regardless of replies; latency runs from the scheduled send time.

    Measuring from the schedule, not from the actual send, keeps a stalled server from hiding
    its own stall (coordinated omission): late sends count as late.
    """
    interval = 1.0 / rate
    total = int((warmup_s + duration_s) * rate)
    measure_from_k = int(warmup_s * rate)
    samples: list[tuple[float, float]] = []
    """(scheduled offset into the measured part, latency) of each success."""
    counts = {"errors": 0, "ok_total": 0}
    tasks: set[asyncio.Task[None]] = set()

    async def one(k: int, scheduled: float) -> None:
        try:
            ok = check(await nc.request(subject, body(0, k), timeout=timeout_s))
        except Exception:
            ok = False
        done = time.perf_counter()
        counts["ok_total"] += ok
        if k >= measure_from_k:
            if ok:
                samples.append((scheduled - measured_from, done - scheduled))
            else:
                counts["errors"] += 1

    t0 = time.perf_counter() + 0.01
    measured_from = t0 + measure_from_k * interval
    for k in range(total):
        scheduled = t0 + k * interval
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        task = asyncio.create_task(one(k, scheduled))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(set(tasks))
    measured = total - measure_from_k
    run = summarize(label or f"{rate:,.0f} req/s", [lat for _, lat in samples], counts["errors"],
                    measured * interval)
    return replace(run, windows=by_window(samples, WINDOW_S)), counts["ok_total"]


def client_counts(text: str) -> tuple[int, ...]:
    """`--clients 1,16,64` as counts, refusing anything outside 1..1024 the way typer reports options."""
    try:
        counts = tuple(int(c) for c in text.split(",") if c.strip())
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1 or max(counts) > 1024:
        raise typer.BadParameter("clients: comma-separated counts between 1 and 1024", param_hint="--clients")
    return counts
