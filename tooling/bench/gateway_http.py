"""`qt bench gateway`, HTTP side: the saga bench's order workload as `POST /v1/orders`, and cheap GETs.

Each order is the one `tooling.bench.saga.saga_body` makes for the same (client, i), turned into the
gateway's JSON (decimal strings, no `saga_id`: the gateway derives it from the Idempotency-Key, and
no `account`: the bearer token of that account says it). Every closed-loop client has its own
httpx.AsyncClient holding one HTTP/1.1 keep-alive connection: one shared client with a pool sized to
the concurrency costs far more client CPU per request as the pool grows (on this machine, 4.5 ms per
request with 16 connections and 16 ms with 64, against 1.8 ms for one client per worker).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import msgpack

from contracts.instruments import instrument
from contracts.money import format_amount
from tooling.bench.saga import SYMBOL, saga_body
from tooling.bench.stats import Run, summarize

Send = Callable[[int, int], Awaitable[bool]]
"""`(client, i) -> success` of a client's i-th request."""

SPEC = instrument(SYMBOL)


@asynccontextmanager
async def http_clients(base_url: str, count: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """`count` keep-alive HTTP/1.1 clients of one connection each, no proxies from the environment."""
    limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
    async with contextlib.AsyncExitStack() as stack:
        yield [await stack.enter_async_context(httpx.AsyncClient(base_url=base_url, limits=limits, timeout=60.0,
                                                                  trust_env=False)) for _ in range(count)]


def order_request(make: Callable[[int, int], bytes]) -> Callable[[int, int], tuple[str, bytes, bool]]:
    """(client, i) -> (account, JSON body, crossing) of the saga bench's order for the same (client, i)."""

    def one(c: int, i: int) -> tuple[str, bytes, bool]:
        order = msgpack.unpackb(make(c, i), raw=False)
        crossing = str(order.pop("saga_id")).endswith("x")
        account = order.pop("account")
        order["price"] = format_amount(SPEC.quote, order["price"])
        order["qty"] = format_amount(SPEC.base, order["qty"])
        return account, json.dumps(order, separators=(",", ":")).encode(), crossing

    return one


def place_orders(http: list[httpx.AsyncClient], tokens: dict[str, str], tag: str, mix: Counter[str]) -> Send:
    """`POST /v1/orders` of the saga workload under a fresh Idempotency-Key each; success = a completed saga."""
    orders = order_request(saga_body(tag))

    async def send(c: int, i: int) -> bool:
        account, body, crossing = orders(c, i)
        response = await http[c].post("/v1/orders", content=body, headers={
            "Authorization": f"Bearer {tokens[account]}", "Idempotency-Key": f"{tag}-{c}-{i}",
            "Content-Type": "application/json"})
        if response.status_code != 201:
            problem = response.headers.get("content-type", "").endswith("json")
            code = response.json().get("code", "?") if problem else "?"
            mix[f"error {response.status_code} {code}"] += 1
            return False
        reply = response.json()
        kind = "crossing" if crossing else "resting"
        mix[f"{kind} {reply['order_status']}"] += 1
        mix["fills"] += len(reply.get("fills") or ())
        if reply["status"] != "completed":
            mix[f"saga {reply['status']}"] += 1
            return False
        return True

    return send


def get(http: list[httpx.AsyncClient], path: str, params: dict[str, str] | None = None) -> Send:
    """A GET that succeeds on 200."""

    async def send(c: int, _i: int) -> bool:
        return (await http[c].get(path, params=params)).status_code == 200

    return send


async def closed_loop(send: Send, *, clients: int, duration_s: float, warmup_s: float, label: str) -> Run:
    """`clients` coroutines each with one request in flight, as `tooling.bench.harness.closed_loop` does over NATS:
    requests started in the warm-up run but are not measured; latency is send to response read."""
    latencies: list[float] = []
    errors = [0]
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
            try:
                ok = await send(c, i)
            except Exception:
                ok = False
            i += 1
            done = time.perf_counter()
            if sent >= measure_from:
                if ok:
                    latencies.append(done - sent)
                else:
                    errors[0] += 1
                last_done[0] = max(last_done[0], done)

    await asyncio.gather(*(one_client(c) for c in range(clients)))
    return summarize(label, latencies, errors[0], last_done[0] - measure_from)
