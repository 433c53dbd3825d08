"""`qt bench gateway`, HTTP side: the saga bench's order workload as `POST /v1/orders`, and cheap GETs.

Each order is the one `tooling.bench.saga.saga_body` makes for the same (client, i), turned into the
gateway's JSON (decimal strings, no `saga_id`: the gateway derives it from the Idempotency-Key, and
no `account`: the bearer token of that account says it). Every closed-loop client has its own
HTTP/1.1 keep-alive connection (`Connection`: a request is one write, a response is read by its
Content-Length), as lean as nats-py on the raw path: httpx cost this process ~1.3-1.5 ms of CPU per
request on this machine, and that CPU shares the 2 cores with the gateway it measures.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import msgpack

from contracts.instruments import instrument
from contracts.money import format_amount
from tooling.bench.saga import SYMBOL, saga_body
from tooling.bench.stats import Run, summarize

Send = Callable[[int, int], Awaitable[bool]]
"""`(client, i) -> success` of a client's i-th request."""

SPEC = instrument(SYMBOL)


@dataclass
class Reply:
    """A response as the bench needs it."""

    status_code: int
    headers: dict[str, str]
    content: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.content)


class Connection:
    """One HTTP/1.1 keep-alive connection to the gateway, one request at a time (the closed loop's client)."""

    def __init__(self, base_url: str) -> None:
        parsed = urlsplit(base_url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port or 80
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def request(self, method: str, path: str, body: bytes = b"",
                      headers: dict[str, str] | None = None) -> Reply:
        """Send one request and read its whole response; a kept-alive connection the server closed while it
        idled (uvicorn's keep-alive timeout) is opened again and the request sent once more, as httpx does."""
        head = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        request = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body
        reused = self._streams is not None
        if self._streams is None:
            self._streams = await asyncio.open_connection(self.host, self.port)
        reader, writer = self._streams
        try:
            writer.write(request)
            head_bytes = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, ConnectionError) as exc:
            await self.close()
            if not reused or (isinstance(exc, asyncio.IncompleteReadError) and exc.partial):
                raise
            self._streams = await asyncio.open_connection(self.host, self.port)
            reader, writer = self._streams
            writer.write(request)
            head_bytes = await self._read(reader.readuntil(b"\r\n\r\n"))
        try:
            status_line, _, rest = head_bytes.decode("latin-1").partition("\r\n")
            found = dict(line.split(":", 1) for line in rest.split("\r\n") if ":" in line)
            got = {name.strip().lower(): value.strip() for name, value in found.items()}
            if "content-length" not in got:  # every gateway response has one; nothing else is read here
                raise ValueError(f"{method} {path}: a response without Content-Length")
            content = await reader.readexactly(int(got["content-length"]))
        except BaseException:
            await self.close()
            raise
        if got.get("connection", "").lower() == "close":
            await self.close()
        return Reply(int(status_line.split(" ", 2)[1]), got, content)

    async def _read(self, reading: Awaitable[bytes]) -> bytes:
        try:
            return await reading
        except BaseException:
            await self.close()
            raise

    async def post(self, path: str, content: bytes, headers: dict[str, str]) -> Reply:
        """POST `content`."""
        return await self.request("POST", path, content, headers)

    async def get(self, path: str, params: dict[str, str] | None = None) -> Reply:
        """GET `path` with its query `params`."""
        return await self.request("GET", path + (f"?{urlencode(params)}" if params else ""))

    async def close(self) -> None:
        """Close the connection (the next request opens a new one)."""
        if self._streams is not None:
            writer = self._streams[1]
            self._streams = None
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()


@asynccontextmanager
async def http_clients(base_url: str, count: int) -> AsyncIterator[list[Connection]]:
    """`count` keep-alive HTTP/1.1 connections, one per closed-loop client, closed at the end."""
    connections = [Connection(base_url) for _ in range(count)]
    try:
        yield connections
    finally:
        for connection in connections:
            await connection.close()


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


def place_orders(http: list[Connection], tokens: dict[str, str], tag: str, mix: Counter[str]) -> Send:
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


def get(http: list[Connection], path: str, params: dict[str, str] | None = None) -> Send:
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


async def interleaved(sends: dict[str, Send], *, duration_s: float, warmup_s: float, block: int = 2,
                      label: str = "") -> dict[str, Run]:
    """One client sending `block` requests down each path in turn, every path counting its own `i`: each path's
    latencies come from the same minutes of a machine whose speed drifts, which two points one after the other
    do not give. `block=2` keeps the saga bench's resting/crossing pairs whole on every path."""
    latencies: dict[str, list[float]] = {path: [] for path in sends}
    errors = dict.fromkeys(sends, 0)
    sent_on = dict.fromkeys(sends, 0)
    start = time.perf_counter()
    measure_from = start + warmup_s
    end = measure_from + duration_s
    last_done = end
    k = 0
    paths = list(sends)
    while (sent := time.perf_counter()) < end:
        path = paths[(k // block) % len(paths)]
        k += 1
        i = sent_on[path]
        sent_on[path] += 1
        try:
            ok = await sends[path](0, i)
        except Exception:
            ok = False
        done = time.perf_counter()
        if sent >= measure_from:
            if ok:
                latencies[path].append(done - sent)
            else:
                errors[path] += 1
            last_done = max(last_done, done)
    return {path: summarize(f"{label}{path}", latencies[path], errors[path], last_done - measure_from)
            for path in sends}
