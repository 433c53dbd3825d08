"""`qt bench gateway`: the HTTP gateway's cost on the place-order saga, its read ceiling, WebSocket fan-out, RSS.

The saga bench's platform (one nats-server, `nodes.wallet`, `nodes.matching`, `nodes.clearing`, the same
funded accounts and seeded AAPL book) plus one `python -m gateway` process, all started by a `Mesh` and
stopped by PID. At each client count the saga bench's closed loop runs over raw NATS and then, with the
same orders, as `POST /v1/orders` through the gateway: the difference is the gateway's overhead. Then
GETs (`/health`, an L2 book read) at the highest count, and last the WebSocket fan-out: subscriber
processes on `book.MSFT` while the engine's feed is driven at fixed rates (`tooling.bench.gateway_ws`),
judged by staleness per book seq over update and snapshot frames (`tooling.bench.gateway_fanout`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

import httpx
import typer
from nats.aio.client import Client
from nats.js.errors import KeyNotFoundError
from rich.console import Console

from contracts.credentials import nkey_seed_path
from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER, Role
from contracts.subjects import IDEMPOTENCY_BUCKET
from gateway.keys import key_paths, load_private
from gateway.tokens import mint
from tooling.bench import gateway_ws as ws
from tooling.bench.gateway_fanout import Clients, Drive, window
from tooling.bench.gateway_http import Connection, Send, get, http_clients, interleaved, place_orders
from tooling.bench.gateway_http import closed_loop as http_loop
from tooling.bench.gateway_reasons import why
from tooling.bench.gateway_tables import OVERHEAD_CLIENTS, Read, Results, sections, setup, targets
from tooling.bench.harness import client_counts, closed_loop
from tooling.bench.matching import spawn_matching
from tooling.bench.mesh import (
    Child,
    Mesh,
    bench_mesh,
    client,
    command_line,
    cpu_seconds,
    rss_kb,
    wait_quiet,
    wait_ready,
)
from tooling.bench.report import BENCHMARKS_MD, Report, WriteOption, machine_info, present, titled_block
from tooling.bench.saga import PLACE, fund, saga_body, seed_book, spawn_clearing, tally
from tooling.bench.saga_probe import Probe, point_stats
from tooling.bench.stats import Run, fmt_ms, fmt_rate, merged
from tooling.natsserver import NatsServer, free_port

LIMITS = {"QT_RATE_ACCOUNT": "1000000", "QT_BURST_ACCOUNT": "1000000", "QT_RATE_IP": "1000000",
          "QT_BURST_IP": "1000000", "QT_WS_MAX_PER_ACCOUNT": "1000000", "QT_WS_MAX_PER_IP": "1000000"}
"""Rate limits far above anything this bench sends: every client comes from 127.0.0.1."""
SLICES = 4
"""Slices per path of the interleaved throughput measure at the highest client count."""
SLICE_WARMUP_S = 0.5


@dataclass(frozen=True)
class Plan:
    """What one run measures and for how long."""

    clients: tuple[int, ...]
    duration_s: float
    warmup_s: float
    subscribers: int
    ws_procs: int
    rates: tuple[float, ...]
    """Synthetic feed rates (updates/s), the judged one last."""
    engine_rate: float
    """Commands/s sent through matching for the engine-driven window (0: none)."""
    ws_duration_s: float
    compression: bool
    kv_pairs: int
    quiet_s: float = 0.0


@dataclass
class Gateway:
    """The gateway process and how to reach it."""

    child: Child
    url: str
    data: Path

    def token(self, account: str) -> str:
        """A trader token for `account`, signed with the key pair the gateway generated."""
        key = load_private(key_paths(self.data)[0])
        return mint(key, account=account, role=Role.TRADER, ttl_s=3600, issuer=JWT_ISSUER, audience=JWT_AUDIENCE)


async def start_gateway(mesh: Mesh, server: NatsServer, timeout_s: float = 60.0) -> Gateway:
    """`python -m gateway` on a free port with its own data dir (where it generates its JWT key pair)."""
    data = mesh.fresh_dir("gateway")
    port = free_port()
    env = {"QT_NATS_URL": server.url, "QT_DATA_DIR": str(data), "QT_HTTP_PORT": str(port),
           "QT_NKEY_SEED": str(nkey_seed_path(server.data_dir, "gateway")), **LIMITS}
    gw = Gateway(mesh.spawn("gateway", ["-m", "gateway"], env), f"http://127.0.0.1:{port}", data)
    async with httpx.AsyncClient(base_url=gw.url, timeout=2.0, trust_env=False) as http:
        await wait_http(http, "/ready", gw.child, timeout_s)
    return gw


async def run(mesh: Mesh, console: Console, res: Results, plan: Plan) -> None:
    """Start the platform and the gateway, then every point."""
    server = mesh.server("nats")
    assert server.process is not None
    nc = await client(server)
    try:
        wallet = mesh.wallet(server, "wallet", sync="FULL")
        matching = spawn_matching(mesh, server, "matching")
        for name, child in (("wallet", wallet), ("matching", matching)):
            await wait_ready(nc, f"$SRV.PING.{name}", child)
        clearing = spawn_clearing(mesh, server, "clearing")
        await wait_ready(nc, "$SRV.PING.clearing", clearing)
        accounts = await fund(nc)
        await seed_book(nc)
        gw = await start_gateway(mesh, server)
        idle = res.rss["idle (platform seeded, no client yet)"] = rss_kb(gw.child.proc.pid)
        console.print(f"  funded {len(accounts)} accounts, seeded AAPL; gateway at {gw.url} "
                      f"(pid {gw.child.proc.pid}, VmRSS {idle / 1024:.1f} MB)")
        await kv_probe(nc, res, plan.kv_pairs)
        tokens = {account: gw.token(account) for account in accounts}
        res.pids = {"gateway": gw.child.proc.pid, "clearing": clearing.proc.pid, "wallet": wallet.proc.pid,
                    "matching": matching.proc.pid, "nats-server": server.process.pid, "client": os.getpid()}
        probe = Probe(nc, dict(res.pids))
        async with http_clients(gw.url, max(plan.clients)) as http:
            for n in plan.clients:
                await saga_points(nc, http, tokens, probe, res, console, plan, n)
            await paired_points(nc, http, tokens, res, console, plan)
            res.rss["after the HTTP points"] = rss_kb(gw.child.proc.pid)
            await read_points(mesh, http, res, console, plan)
        await fan_out(mesh, server, nc, gw, res, console, plan)
    finally:
        await nc.close()


async def kv_probe(nc: Client, res: Results, pairs: int) -> None:
    """Time an order's record round trips alone: `get` of a fresh key (not found), then its `create`."""
    kv = await nc.jetstream().key_value(IDEMPOTENCY_BUCKET)
    for k in range(pairs):
        started = time.perf_counter()
        with contextlib.suppress(KeyNotFoundError):
            await kv.get(f"bench.kv-probe-{k}")
        read = time.perf_counter()
        await kv.create(f"bench.kv-probe-{k}", b'{"state":"done"}')
        res.kv.read.append(read - started)
        res.kv.create.append(time.perf_counter() - read)


async def saga_points(nc: Client, http: list[Connection], tokens: dict[str, str], probe: Probe, res: Results,
                      console: Console, plan: Plan, n: int) -> None:
    """The same closed loop of `n` clients over raw NATS, then through the gateway."""
    for path in ("nats", "http"):
        label = f"{path} {n}"
        res.mix[label] = mix = Counter()
        if plan.quiet_s > 0:
            await asyncio.to_thread(wait_quiet, plan.quiet_s)
        before = await probe.before()
        loop_before = cpu_seconds(res.pids["gateway"], res.pids["gateway"])
        if path == "nats":
            run_, _ = await closed_loop(nc, PLACE, saga_body(f"n{n}"), clients=n, duration_s=plan.duration_s,
                                        warmup_s=plan.warmup_s, check=tally(mix), label=label)
        else:
            run_ = await http_loop(place_orders(http, tokens, f"h{n}", mix), clients=n, duration_s=plan.duration_s,
                                   warmup_s=plan.warmup_s, label=label)
        loop_s = cpu_seconds(res.pids["gateway"], res.pids["gateway"]) - loop_before
        stats = point_stats(before, await probe.after())
        res.gateway_loop_us[label] = loop_s / stats.sagas * 1e6
        res.runs[label], res.points[label] = run_, stats
        console.print(f"  {label:<9} {fmt_rate(run_.rate)}  p50 {fmt_ms(run_.p50)}  p99 {fmt_ms(run_.p99)}  "
                      f"p99.9 {fmt_ms(run_.p999)}  errors {run_.errors}  gateway "
                      f"{stats.cpu_us.get('gateway', 0.0):,.0f} µs/saga  others {stats.others:.2f} cores")


def nats_orders(nc: Client, tag: str, mix: Counter[str]) -> Send:
    """The saga bench's order `(c, i)` as a raw `clearing.place_order` request: a `Send` like `place_orders`."""
    make, check = saga_body(tag), tally(mix)

    async def send(c: int, i: int) -> bool:
        return check(await nc.request(PLACE, make(c, i), timeout=10.0))

    return send


async def paired_points(nc: Client, http: list[Connection], tokens: dict[str, str], res: Results, console: Console,
                        plan: Plan) -> None:
    """The two judged figures again with both paths interleaved: at 1 client every pair of orders alternates
    between raw NATS and HTTP; at the highest count the closed loops alternate in `SLICES` short slices per path,
    in ABBA order (a linear drift of the machine's speed cancels out)."""
    mix: Counter[str] = Counter()
    if OVERHEAD_CLIENTS in plan.clients:
        if plan.quiet_s > 0:
            await asyncio.to_thread(wait_quiet, plan.quiet_s)
        paths = {"nats": nats_orders(nc, "pn", mix), "http": place_orders(http, tokens, "ph", mix)}
        res.paired = await interleaved(paths, duration_s=2 * plan.duration_s, warmup_s=plan.warmup_s, label="paired ")
        nats, web = res.paired["nats"], res.paired["http"]
        console.print(f"  paired, 1 client: NATS p50 {fmt_ms(nats.p50)}, HTTP p50 {fmt_ms(web.p50)} "
                      f"({nats.ok + web.ok} sagas interleaved, errors {nats.errors + web.errors})")
    top = max(plan.clients)
    slices: dict[str, list[Run]] = {"nats": [], "http": []}
    order = [path for k in range(SLICES) for path in (("nats", "http") if k % 2 == 0 else ("http", "nats"))]
    for k, path in enumerate(order):  # a tag per slice: (c, i) restart at 0 in each, and saga ids must not repeat
        send = nats_orders(nc, f"s{k}n", mix) if path == "nats" else place_orders(http, tokens, f"s{k}h", mix)
        slices[path].append(await http_loop(send, clients=top, duration_s=plan.duration_s / 2,
                                            warmup_s=SLICE_WARMUP_S, label=f"slice {k} {path}"))
    res.sliced = {path: merged(f"sliced {path} {top}", runs) for path, runs in slices.items()}
    nats, web = res.sliced["nats"], res.sliced["http"]
    console.print(f"  sliced, {top} clients: NATS {fmt_rate(nats.rate)}, HTTP {fmt_rate(web.rate)} "
                  f"({SLICES} slices each, ABBA)")


async def read_points(mesh: Mesh, http: list[Connection], res: Results, console: Console, plan: Plan) -> None:
    """GET `/health` (no NATS) and the AAPL book (one `matching.book` request) at the highest client count,
    then `/health` of the bare FastAPI peer (`tooling.bench.gateway_peer`) the same way."""
    n = max(plan.clients)
    gw = res.pids["gateway"]
    pids = {"gateway": [gw], "gateway loop": [-gw], "matching": [res.pids["matching"]],
            "nats-server": [res.pids["nats-server"]], "client": [os.getpid()]}
    port = free_port()
    peer = mesh.spawn("http-peer", ["-m", "tooling.bench.gateway_peer", str(port)], {})
    async with http_clients(f"http://127.0.0.1:{port}", n) as bare:
        await wait_http(bare[0], "/health", peer)
        alone = {"gateway": [peer.proc.pid], "gateway loop": [-peer.proc.pid], "client": [os.getpid()]}
        points: list[tuple[str, str, Send, dict[str, list[int]]]] = [
            ("GET /health", "gateway", get(http, "/health"), pids),
            ("GET /v1/markets/AAPL/book?depth=10", "gateway", get(http, "/v1/markets/AAPL/book", {"depth": "10"}),
             pids),
            ("GET /health", "bare FastAPI peer", get(bare, "/health"), alone),
        ]
        for label, server, send, watched in points:
            if plan.quiet_s > 0:
                await asyncio.to_thread(wait_quiet, plan.quiet_s)
            watch = ws.CpuWatch(watched)
            watch.start()
            run_ = await http_loop(send, clients=n, duration_s=plan.duration_s, warmup_s=min(plan.warmup_s, 0.5),
                                   label=label)
            res.reads.append(Read(label, server, n, run_, watch.stop()))
            console.print(f"  {label} ({server}): {fmt_rate(run_.rate)}  p50 {fmt_ms(run_.p50)}  "
                          f"p99 {fmt_ms(run_.p99)}  errors {run_.errors}")
    mesh.stop(peer)


async def wait_http(http: httpx.AsyncClient | Connection, path: str, child: Child, timeout_s: float = 30.0) -> None:
    """Wait until `path` answers 200, failing fast if the child died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
        try:
            if (await http.get(path)).status_code == 200:
                return
        except (httpx.TransportError, OSError):  # not listening yet
            pass
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{child.name} did not answer {path} within {timeout_s}s; see {child.log}")


async def fan_out(mesh: Mesh, server: NatsServer, nc: Client, gw: Gateway, res: Results, console: Console,
                  plan: Plan) -> None:
    """The engine-driven window first (it leaves the book the synthetic feed continues), then the synthetic rates."""
    clients = Clients(mesh, server, gw.url.replace("http://", "ws://") + f"/v1/ws?token={gw.token('fanout-viewer')}",
                      plan.subscribers, plan.ws_procs, plan.compression, gw.child.proc.pid,
                      {name: res.pids[name] for name in ("matching", "nats-server")})
    steps: list[tuple[Drive, float]] = []
    if plan.engine_rate > 0:
        steps.append((ws.BookDriver(nc).drive, plan.engine_rate))
    synthetic = ws.SyntheticFeed(nc)
    steps += [(synthetic.drive, rate) for rate in plan.rates]
    for drive, rate in steps:
        if plan.quiet_s > 0:
            await asyncio.to_thread(wait_quiet, plan.quiet_s)
        w = await window(clients, nc, drive, rate, plan.ws_duration_s)
        res.windows.append(w)
        console.print(f"  fan-out {w.source} {rate:,.0f}/s: {w.subscribers} subscribers ({w.connect_s:.1f} s to "
                      f"connect), {fmt_rate(w.feed_rate)} updates, {w.updates:,} update + {w.snapshots:,} snapshot "
                      f"frames reaching {w.delivered:,}/{w.expected:,} (subscriber, seq), staleness p50 "
                      f"{fmt_ms(w.delay(0.5))} p99 {fmt_ms(w.delay(0.99))}, {w.dropped} dropped; gateway "
                      f"{w.usage.cores['gateway']:.2f} cores, subscribers {w.usage.cores['subscribers']:.2f}, "
                      f"VmRSS {w.rss_max_kb / 1024:.1f} MB")
    res.rss["peak over the process's life (VmHWM)"] = rss_kb(gw.child.proc.pid, "VmHWM")


def gateway(
    quick: Annotated[bool, typer.Option(help="Smoke run: short points and fan-out windows.")]
    = False,
    clients: Annotated[str, typer.Option(help="Closed-loop client counts, comma-separated.")] = "1,16,64",
    duration: Annotated[float | None, typer.Option(help="Measured seconds per closed-loop point.")] = None,
    subscribers: Annotated[int, typer.Option(help="WebSocket connections on one book channel.")] = 500,
    rate: Annotated[float, typer.Option(help="Book updates/s of the judged fan-out window (synthetic feed).")]
    = 1000.0,
    ladder: Annotated[str, typer.Option(help="Lower synthetic feed rates measured first, comma-separated "
                                        "('' = none).")] = "10,100",
    engine_rate: Annotated[float, typer.Option(help="Commands/s through matching for the engine-driven window "
                                               "(0 = skip it).")] = 200.0,
    ws_procs: Annotated[int, typer.Option(help="Processes the subscribers are spread over.")] = 2,
    ws_duration: Annotated[float | None, typer.Option(help="Seconds the feed is driven at each rate.")] = None,
    compression: Annotated[bool, typer.Option(help="Subscribers offer permessage-deflate.")] = False,
    write: WriteOption = False,
    out: Annotated[Path, typer.Option(help="Markdown file to refresh.")] = BENCHMARKS_MD,
    keep: Annotated[bool, typer.Option(help="Keep the temp dir (logs, data, client recordings).")] = False,
    wait_quiet_s: Annotated[float, typer.Option("--wait-quiet", help="Wait up to this many seconds before each "
                                                "point for other processes to go quiet (shared machines).")] = 0.0,
) -> None:
    """Gateway: POST /v1/orders vs the raw NATS saga (overhead), GET ceiling, WebSocket fan-out delay, RSS."""
    counts = client_counts(clients)
    rates = (*(float(r) for r in ladder.split(",") if r.strip() and float(r) < rate), rate)
    if min(rates) <= 0 or engine_rate < 0:
        raise typer.BadParameter("positive rates", param_hint="--rate/--ladder")
    if not 1 <= ws_procs <= subscribers:
        raise typer.BadParameter("between 1 and --subscribers", param_hint="--ws-procs")
    console = Console() if Console().is_terminal else Console(width=200)
    plan = Plan(clients=counts, duration_s=duration or (1.5 if quick else 5.0), warmup_s=0.3 if quick else 1.0,
                subscribers=subscribers, ws_procs=ws_procs, rates=rates, engine_rate=engine_rate,
                ws_duration_s=ws_duration or (2.0 if quick else 5.0), compression=compression,
                kv_pairs=50 if quick else 200, quiet_s=wait_quiet_s)
    res = Results(rate=rate, subscribers=subscribers, ws_procs=ws_procs, compression=compression)
    report = Report(command=command_line("gateway"), date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    machine=machine_info())
    with bench_mesh("qt-bench-gateway-", keep=keep, console=console) as mesh:
        asyncio.run(run(mesh, console, res, plan))
    report.targets = targets(res)
    report.sections = sections(res)
    report.setup = setup(res, plan.ws_duration_s)
    report.caveats = res.caveats(int(report.machine.get("nproc", "0") or 0))
    reason = why(res)
    present(console, report, reason, write=write, out=out, name="gateway",
            render=lambda r, why_text: titled_block(r, why_text, "gateway"))

