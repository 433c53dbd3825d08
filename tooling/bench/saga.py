"""`qt bench saga`: place_order sagas/s through clearing over NATS, where a saga's time goes, and its round trips.

One fresh nats-server (our nats.conf) and one process each of `nodes.wallet`, `nodes.matching` and
`nodes.clearing`, started by a `Mesh` and stopped by PID. Market makers seed a two-sided AAPL book
through clearing; closed loops (1/16/64/256 clients) and an open loop at 500 sagas/s then run between two
scrapes of the nodes' counters (clearing's histograms, every endpoint's `$SRV.STATS`, TRADES, CPU), and
CPU per saga of every process is read again over each point's measured window alone (the judged figure);
last, the 16-client point again on a second clearing process with `QT_SAGA_CHECKPOINT=each`.
"""

from __future__ import annotations

import asyncio
import os
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Annotated

import msgpack
import typer
from nats.aio.client import Client
from nats.aio.msg import Msg
from rich.console import Console

from contracts.codec import loads
from contracts.credentials import nkey_seed_path
from contracts.instruments import instrument
from contracts.subjects import clearing_subject, wallet_subject
from mesh.rpc import QT_ERROR_HEADER, call
from tooling.bench.harness import BodyFactory, Check, client_counts, closed_loop, no_error, open_loop
from tooling.bench.matching import spawn_matching
from tooling.bench.mesh import (
    DISTURBED,
    Child,
    Mesh,
    bench_mesh,
    client,
    command_line,
    wait_quiet,
    wait_ready,
)
from tooling.bench.profile import profile_sections
from tooling.bench.report import BENCHMARKS_MD, Report, WriteOption, machine_info, present, titled_block
from tooling.bench.saga_probe import Probe, cpu_window, point_stats
from tooling.bench.saga_tables import SEEDED, SYSTEM, Results, sections, targets, why
from tooling.bench.stats import Run, fmt_ms, fmt_rate
from tooling.bench.store_cost import MESSAGES, store_costs
from tooling.natsserver import NatsServer

SYMBOL = "AAPL"
REF = instrument(SYMBOL).reference_price  # 187.42 USD in cents
PLACE = clearing_subject("place_order")
LEVELS = 20
"""Market-maker price levels seeded on each side, one tick apart from the reference outwards."""
SEED_QTY = 50 * 10_000  # 50 shares per level
QTY = 10_000  # one share per measured order: a crossing order always fills against one resting order
BAND = 15
"""A resting order rests 1..BAND ticks from the reference on its own side: it never crosses."""
THROUGH = 50
"""A crossing order's limit is 0.50 USD through the reference: marketable whatever the touch."""
POOL = 32
MARKET_MAKERS = 4
FUNDS = {"USD": 1_000_000_000, "AAPL": 1_000_000_000}  # 10,000,000.00 USD and 100,000 shares per account
OPEN_CLIENTS = 16
"""The open loop spreads its orders over this many pseudo-clients' accounts and alternations."""


def saga_body(tag: str) -> BodyFactory:
    """Client `c`'s i-th order: even i rests, odd i crosses on the opposite side; sides swap every pair.

    Resting orders come from `maker-*` accounts and crossing ones from `taker-*` accounts, so no order
    ever meets one of its own account's (no self-trade prevention). Each pair adds one share to a side
    of the book and takes one share from that same side, so the book's depth stays where it was seeded.
    The saga id ends in `r` (resting) or `x` (crossing), which the reply check reads back.
    """

    def make(c: int, i: int) -> bytes:
        pair, crossing = divmod(i, 2)
        rest_buys = (c + pair) % 2 == 0
        if crossing:
            side = "SELL" if rest_buys else "BUY"
            price = REF - THROUGH if side == "SELL" else REF + THROUGH
            account = f"taker-{c % POOL}"
        else:
            side = "BUY" if rest_buys else "SELL"
            offset = 1 + (c * 7 + pair) % BAND
            price = REF - offset if side == "BUY" else REF + offset
            account = f"maker-{c % POOL}"
        return msgpack.packb({"saga_id": f"{tag}-{c}-{i}{'x' if crossing else 'r'}", "account": account,
                              "instrument": SYMBOL, "side": side, "type": "LIMIT", "tif": "GTC",
                              "price": price, "qty": QTY}, use_bin_type=True)

    return make


def open_body(tag: str) -> BodyFactory:
    """The open loop's k-th order: resting and crossing alternate in sequence, over `OPEN_CLIENTS` accounts."""
    make = saga_body(tag)

    def one(_c: int, k: int) -> bytes:
        return make((k // 2) % OPEN_CLIENTS, 2 * (k // (2 * OPEN_CLIENTS)) + k % 2)

    return one


def tally(mix: Counter[str]) -> Check:
    """A reply check: only a `completed` saga is a success; order statuses, fills and errors are counted."""

    def check(msg: Msg) -> bool:
        if not no_error(msg):
            mix[f"error {(msg.headers or {}).get(QT_ERROR_HEADER, '?')}"] += 1
            return False
        reply = loads(msg.data)
        kind = "crossing" if str(reply["saga_id"]).endswith("x") else "resting"
        mix[f"{kind} {reply['order_status']}"] += 1
        mix["fills"] += len(reply.get("fills") or ())
        if reply["status"] != "completed":
            mix[f"saga {reply['status']}"] += 1
            return False
        return True

    return check


def spawn_clearing(mesh: Mesh, server: NatsServer, name: str, checkpoint: str = "",
                   profile_to: Path | None = None) -> Child:
    """A `python -m nodes.clearing` process on a fresh data dir (`checkpoint="each"`: a write before every step;
    `profile_to`: under cProfile, every thread, stats written there when it stops)."""
    data = mesh.fresh_dir(name)
    env = {"QT_NATS_URL": server.url, "QT_DATA_DIR": str(data),
           "QT_NKEY_SEED": str(nkey_seed_path(server.data_dir, "clearing")), "QT_SAGA_CHECKPOINT": checkpoint}
    argv = ["-m", "nodes.clearing"]
    if profile_to is not None:
        argv = ["-m", "tooling.bench.profiled", str(profile_to), "nodes.clearing"]
    return mesh.spawn(name, argv, env)


async def fund(nc: Client) -> list[str]:
    """Deposit `FUNDS` into every market-maker, maker and taker account; returns the accounts."""
    accounts = [f"mm-{k}" for k in range(MARKET_MAKERS)]
    accounts += [f"{role}-{k}" for role in ("maker", "taker") for k in range(POOL)]
    await asyncio.gather(*(call(nc, wallet_subject("deposit", 0), {"account": account, "asset": asset, "amount": amount,
                                                                 "op_id": f"fund:{account}:{asset}"}, timeout=30)
                           for account in accounts for asset, amount in FUNDS.items()))
    return accounts


async def seed_book(nc: Client) -> None:
    """`LEVELS` resting bids and asks of 50 shares each, placed through clearing by the market makers."""
    orders = [{"saga_id": f"seed-{side}-{level}", "account": f"mm-{level % MARKET_MAKERS}", "instrument": SYMBOL,
               "side": side, "type": "LIMIT", "tif": "GTC", "price": REF - level if side == "BUY" else REF + level,
               "qty": SEED_QTY} for level in range(1, LEVELS + 1) for side in ("BUY", "SELL")]
    for reply in await asyncio.gather(*(call(nc, PLACE, order, timeout=30) for order in orders)):
        if reply["status"] != "completed" or reply["order_status"] != "new":
            raise RuntimeError(f"seeding the book failed: {reply}")


@dataclass(frozen=True)
class Plan:
    """What one run measures and for how long."""

    clients: tuple[int, ...]
    duration_s: float
    warmup_s: float
    rate: float
    open_s: float
    quiet_s: float = 0.0
    """Wait up to this long before each point for other processes to go quiet (0: don't)."""
    profile_s: float = 0.0
    """Seconds of load on a clearing process under cProfile when a target was missed (0: never)."""
    store_messages: int = MESSAGES
    """Messages stored per batch shape of the stored-message cost table."""

    @property
    def each_clients(self) -> int:
        """The client count measured again with `QT_SAGA_CHECKPOINT=each`."""
        return 16 if 16 in self.clients else max(self.clients)


async def measure(probe: Probe, res: Results, label: str, console: Console, plan: Plan, warmup_s: float,
                  load: Callable[[], Awaitable[tuple[Run, int]]]) -> None:
    """Run one load between two snapshots and record its run and counters under `label`; CPU per saga is
    also taken over the measured window alone (marks `warmup_s` after the load starts and after it ends)."""
    if plan.quiet_s > 0:
        await asyncio.to_thread(wait_quiet, plan.quiet_s)
    before = await probe.before()
    task = asyncio.create_task(load())
    await asyncio.sleep(warmup_s)
    start = await probe.mark()
    run_, _ = await task
    end = await probe.mark()
    after = await probe.after()
    res.runs[label] = run_
    res.resident[label] = probe.resident_kb()
    res.points[label] = stats = point_stats(before, after)
    res.cpu[label] = window = cpu_window(start, end)
    console.print(f"  {label:<18} {fmt_rate(run_.rate)}  p50 {fmt_ms(run_.p50)}  p99 {fmt_ms(run_.p99)}  "
                  f"p99.9 {fmt_ms(run_.p999)}  errors {run_.errors}  {stats.round_trips:.2f} round trips and "
                  f"{stats.kv_writes:.2f} KV writes per saga  CPU {window.total_us(SYSTEM):,.0f} µs/saga  "
                  f"others {window.others:.2f} cores")


def closed_label(clients: int, checkpoint: str = "") -> str:
    """`1 client`, `16 clients`, `16 clients, each`."""
    return f"{clients} client{'s' if clients > 1 else ''}" + (f", {checkpoint}" if checkpoint else "")


async def run(mesh: Mesh, console: Console, res: Results, plan: Plan) -> None:
    """Start the platform, fund and seed, then every point."""
    server = mesh.server("nats")
    assert server.process is not None
    nc = await client(server)
    try:
        nodes = {"wallet": mesh.wallet(server, "wallet", sync="FULL"),
                 "matching": spawn_matching(mesh, server, "matching")}
        for name, child in nodes.items():
            await wait_ready(nc, f"$SRV.PING.{name}", child)
        clearing = spawn_clearing(mesh, server, "clearing")
        await wait_ready(nc, "$SRV.PING.clearing", clearing)
        accounts = await fund(nc)
        await seed_book(nc)
        console.print(f"  funded {len(accounts)} accounts; seeded {LEVELS} levels a side of {SYMBOL} through clearing")
        pids = {"clearing": clearing.proc.pid, "wallet": nodes["wallet"].proc.pid,
                "matching": nodes["matching"].proc.pid, "nats-server": server.process.pid, "client": os.getpid()}
        probe = Probe(nc, pids)
        res.resident[SEEDED] = probe.resident_kb()
        for n in plan.clients:
            await closed_point(nc, probe, res, console, plan, n)
        label = res.open_label = f"open {plan.rate:,.0f}/s"
        res.mix[label] = Counter()
        await measure(probe, res, label, console, plan, min(1.0, plan.warmup_s), partial(
            open_loop, nc, PLACE, open_body(f"o{plan.rate:g}"), rate=plan.rate, duration_s=plan.open_s,
            warmup_s=min(1.0, plan.warmup_s), check=tally(res.mix[label]), label=label))
        mesh.stop(clearing)  # the same point again with a write before every step, on a second clearing
        each = spawn_clearing(mesh, server, "clearing-each", checkpoint="each")
        await wait_ready(nc, "$SRV.PING.clearing", each)
        probe.pids["clearing"] = each.proc.pid
        await closed_point(nc, probe, res, console, plan, plan.each_clients, "each")
        res.each = (closed_label(plan.each_clients), closed_label(plan.each_clients, "each"))
        res.store_costs = await store_costs(mesh, messages=plan.store_messages)
        console.print("  nats-server CPU per stored message: " + ", ".join(
            f"{c.mode} {c.batch} {c.server_us:,.0f} µs" for c in res.store_costs))
        if plan.profile_s > 0 and any(not t.met for t in targets(res)):
            mesh.stop(each)
            await profile_clearing(mesh, server, nc, res, console, plan)
    finally:
        await nc.close()


async def profile_clearing(mesh: Mesh, server: NatsServer, nc: Client, res: Results, console: Console,
                           plan: Plan) -> None:
    """The best closed-loop point again on a clearing process under cProfile; its tables go into `res`."""
    best = max(res.closed(), key=lambda label: res.runs[label].rate)
    n = res.clients[best]
    out = mesh.fresh_dir("profile") / "clearing.prof"
    child = spawn_clearing(mesh, server, "clearing-profiled", profile_to=out)
    await wait_ready(nc, "$SRV.PING.clearing", child)
    run_, _ = await closed_loop(nc, PLACE, saga_body(f"p{n}"), clients=n, duration_s=plan.profile_s, warmup_s=0.5,
                                check=tally(Counter()), label=f"{n} clients under cProfile")
    code = mesh.stop(child, timeout_s=60.0)
    if not out.exists():
        console.print(f"  [red]no profile written (exit code {code}); see {child.log}[/red]")
        return
    console.print(f"  profiled clearing, {n} clients: {fmt_rate(run_.rate)} (under cProfile)")
    res.profile = profile_sections(out, f"Profile of the clearing process ({n} clients)", run_.seconds + 0.5)
    res.profile[0].notes.append(f"Throughput while profiled: {fmt_rate(run_.rate, ' sagas/s')} (cProfile slows Python "
                                "roughly 2x); wallet, matching and nats-server ran unprofiled: their share is in "
                                "the CPU per saga table.")


async def closed_point(nc: Client, probe: Probe, res: Results, console: Console, plan: Plan, n: int,
                       checkpoint: str = "") -> None:
    """`n` closed-loop clients for the plan's warm-up and duration."""
    label = closed_label(n, checkpoint)
    res.mix[label], res.clients[label] = Counter(), n
    await measure(probe, res, label, console, plan, plan.warmup_s, partial(
        closed_loop, nc, PLACE, saga_body(f"{checkpoint or 'c'}{n}"), clients=n, duration_s=plan.duration_s,
        warmup_s=plan.warmup_s, check=tally(res.mix[label]), label=label))


def saga(
    quick: Annotated[bool, typer.Option(help="~30 s smoke run: short points.")] = False,
    clients: Annotated[str, typer.Option(help="Concurrent closed-loop client counts, comma-separated (enough "
                                         "to saturate the mesh).")] = "1,16,64,256",
    duration: Annotated[float | None, typer.Option(help="Measured seconds per closed-loop point.")] = None,
    rate: Annotated[float, typer.Option(help="Open-loop offered sagas/s (the p99 target is judged at 500).")] = 500.0,
    write: WriteOption = False,
    out: Annotated[Path, typer.Option(help="Markdown file to refresh.")] = BENCHMARKS_MD,
    keep: Annotated[bool, typer.Option(help="Keep the temp dir (logs, data).")] = False,
    wait_quiet_s: Annotated[float, typer.Option("--wait-quiet", help="Wait up to this many seconds before each "
                                                "point for other processes to go quiet (shared machines).")] = 0.0,
    profile_duration: Annotated[float | None, typer.Option(help="Seconds of load on a clearing process under "
                                                           "cProfile when a target is missed (0 = skip; default "
                                                           "4, 0 with --quick).")] = None,
) -> None:
    """Saga: place_order sagas/s through clearing (1/16/64/256 clients), p99 at 500/s, CPU per saga, steps."""
    counts = client_counts(clients)
    if rate <= 0:
        raise typer.BadParameter("a positive rate", param_hint="--rate")
    console = Console() if Console().is_terminal else Console(width=200)
    res = Results(rate=rate)
    report = Report(command=command_line("saga"), date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    machine=machine_info())
    with bench_mesh("qt-bench-saga-", keep=keep, console=console) as mesh:
        asyncio.run(run(mesh, console, res, Plan(clients=counts, duration_s=duration or (1.5 if quick else 5.0),
                                                 warmup_s=0.3 if quick else 1.0, rate=rate,
                                                 open_s=2.0 if quick else 5.0, quiet_s=wait_quiet_s,
                                                 profile_s=profile_duration if profile_duration is not None else
                                                 (0.0 if quick else 4.0),
                                                 store_messages=MESSAGES // 4 if quick else MESSAGES)))
    report.targets = targets(res)
    report.sections = sections(res)
    report.setup = [
        "one nats-server 127.0.0.1, our nats.conf (`sync_interval: always`); one process each of "
        "`nodes.wallet` (`QT_WALLET_SYNC=FULL`), `nodes.matching` and `nodes.clearing` (default checkpoints, "
        "then a second clearing process with `QT_SAGA_CHECKPOINT=each` for the last point)",
        f"book: {SYMBOL} seeded through clearing by {MARKET_MAKERS} market-maker accounts, {LEVELS} levels of 50 "
        f"shares a side, one tick apart outwards from the reference 187.42",
        f"clients: nats-py in this process, `clearing.place_order` on the msgpack wire, one saga in flight per "
        f"client; each client alternates a resting GTC limit 0.01-0.{BAND:02d} from the reference on its side "
        f"({POOL} maker accounts) and a crossing GTC limit 0.{THROUGH} through it on the other side ({POOL} "
        "taker accounts), 1 share each, sides swapping every pair: half the orders take liquidity and the "
        "book keeps its depth; only `completed` sagas count as successes",
        "counters per point: clearing's `clearing.metrics` (histograms and `qt_saga_kv_writes`) and every "
        "endpoint's `$SRV.STATS` `num_requests`, scraped before and after; TRADES messages; CPU per saga: "
        "/proc/<pid>/stat utime+stime of nats-server and every node (and any process they started) over the "
        "measured window, warm-up excluded, divided by the sagas clearing finished in it",
    ]
    busy = {label: p.others for label, p in res.points.items() if p.others > DISTURBED}
    if busy:
        report.caveats.append(
            f"Other processes on this {report.machine.get('nproc', '?')}-core machine used CPU during: "
            + ", ".join(f"{label} ({cores:.2f} cores)" for label, cores in busy.items())
            + "; rates there are lower and latencies higher than on a quiet machine (CPU per saga is robust).")
    reason = why(res)
    present(console, report, reason, write=write, out=out, name="saga",
            render=lambda r, why_text: titled_block(r, why_text, "saga"))
