"""`qt bench matching`: journaled orders/s through `matching.submit` over NATS, and the engine's replay rate.

One fresh nats-server (our nats.conf, `sync_interval: always`) and one `python -m nodes.matching`
process, both started by a `Mesh` and stopped by PID. Closed loops with 1/16/64 clients, an open
loop at 1,000 orders/s, the JetStream publish peers on the same server, then a replay of the whole
journal by a restarted engine without a snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import msgpack
import typer
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StorageType, StreamConfig
from nats.js.errors import NotFoundError
from rich.console import Console

from contracts.codec import loads
from contracts.credentials import nkey_seed_path
from contracts.errors import QtError
from contracts.subjects import ORDERS_STREAM, SNAPSHOTS_OBJECTS, MatchingEndpoint, matching_subject, orders_subject
from mesh.rpc import call
from nodes.matching.engine import BATCH, command_key
from nodes.matching.journal import MAX_BATCH, journal_message
from tooling.bench import jetstream
from tooling.bench.harness import BodyFactory, client_counts, closed_loop, no_error, open_loop
from tooling.bench.matching_engines import spread
from tooling.bench.matching_tables import (
    CLIENTS_TARGET,
    REPLAY_TARGET,
    Results,
    caveats,
    engines_section,
    markdown,
    profile_section,
    replay_profile_section,
    sections,
    targets,
    why,
)
from tooling.bench.mesh import (
    DISTURBED,
    Child,
    Mesh,
    OtherLoad,
    bench_mesh,
    client,
    command_line,
    cpu_seconds,
    wait_quiet,
    wait_ready,
)
from tooling.bench.report import BENCHMARKS_MD, Report, WriteOption, machine_info, present
from tooling.bench.stats import fmt_ms, fmt_rate
from tooling.natsserver import NatsServer

SYMBOL = "BTC-USD"
MID = 6_750_000  # 67,500.00 USD in cents
SUBMIT = matching_subject(SYMBOL, MatchingEndpoint.SUBMIT)
STATUS = matching_subject(SYMBOL, MatchingEndpoint.STATUS)
SNAPSHOT_OBJECT = f"matching.{SYMBOL}"


def order_body(tag: str, seed: int = 7) -> BodyFactory:
    """BTC-USD limit orders around the mid: 70% passive ($1-$50 away), 30% crossing up to $5, 1/3 IOC."""
    rngs: dict[int, random.Random] = {}

    def make(c: int, i: int) -> bytes:
        rng = rngs.get(c)
        if rng is None:
            rng = rngs[c] = random.Random(seed * 1_000_003 + c)
        return msgpack.packb(order_dict(rng, f"{tag}-{c}-{i}"), use_bin_type=True)

    return make


def order_dict(rng: random.Random, order_id: str) -> dict[str, Any]:
    """One order of the mix, integer units (the msgpack wire)."""
    buy = rng.random() < 0.5
    tif = "GTC"
    if rng.random() < 0.3:  # aggressive: through the mid by $0-$5
        offset = -rng.randint(0, 5) * 100
        if rng.random() < 1 / 3:
            tif = "IOC"
    else:  # passive: $1-$50 away from the mid on its own side
        offset = rng.randint(1, 50) * 100
    return {"order_id": order_id, "account": f"acct{rng.randrange(1000)}", "instrument": SYMBOL,
            "side": "BUY" if buy else "SELL", "type": "LIMIT", "tif": tif,
            "price": MID - offset if buy else MID + offset, "qty": rng.randint(1, 200) * 1000}


def counting(mix: dict[str, int]) -> Any:
    """A reply check that also tallies statuses and fills of successful replies."""

    def check(msg: Msg) -> bool:
        if not no_error(msg):
            return False
        with contextlib.suppress(Exception):
            reply = loads(msg.data)
            mix[reply["status"]] = mix.get(reply["status"], 0) + 1
            mix["fills"] = mix.get("fills", 0) + len(reply.get("fills") or ())
        return True

    return check


def spawn_matching(mesh: Mesh, server: NatsServer, name: str, profile_to: Path | None = None) -> Child:
    """A `python -m nodes.matching` process on a fresh data dir (optionally under cProfile)."""
    data = mesh.fresh_dir(name)
    env = {"QT_NATS_URL": server.url, "QT_DATA_DIR": str(data),
           "QT_NKEY_SEED": str(nkey_seed_path(server.data_dir, "matching"))}
    argv = ["-m", "nodes.matching"]
    if profile_to is not None:
        argv = ["-m", "tooling.bench.profiled", str(profile_to), "nodes.matching"]
    return mesh.spawn(name, argv, env)


async def applied_seq(nc: Client) -> int | None:
    """BTC-USD's applied journal sequence, or None while the engine does not answer."""
    now = await applied(nc)
    return None if now is None else now[0]


async def applied(nc: Client) -> tuple[int, int] | None:
    """BTC-USD's (applied journal sequence, distinct commands applied), or None while the engine does not answer."""
    try:
        reply = await call(nc, STATUS, {"instrument": SYMBOL}, timeout=0.5)
    except (QtError, TimeoutError):
        return None
    status = reply["instruments"][0]
    return int(status["applied_seq"]), int(status.get("applied_commands", status["applied_seq"]))


async def wait_applied(nc: Client, child: Child, target: int, started: float, timeout_s: float = 300.0) -> float:
    """Seconds from `started` until the engine reports `applied_seq >= target` (polled every 50 ms)."""
    while time.perf_counter() - started < timeout_s:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
        seq = await applied_seq(nc)
        if seq is not None and seq >= target:
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    raise TimeoutError(f"{child.name} did not reach seq {target} in {timeout_s}s; see {child.log}")


async def journal_last_seq(nc: Client) -> int:
    """The last ORDERS sequence of BTC-USD (0 when empty)."""
    try:
        return (await nc.jetstream().get_last_msg(ORDERS_STREAM, orders_subject(SYMBOL))).seq or 0
    except NotFoundError:
        return 0


async def top_up(nc: Client, count: int, console: Console, batch: int) -> int:
    """Journal `count` more orders directly (not through `matching.submit`), shaped like the last command,
    `batch` per journal message as the node's smart batching wrote them under load."""
    if count <= 0:
        return 0
    js = nc.jetstream()
    last = msgpack.unpackb((await js.get_last_msg(ORDERS_STREAM, orders_subject(SYMBOL))).data, raw=False)
    template = last["commands"][-1] if last["op"] == BATCH else last
    rng = random.Random(11)
    started = time.perf_counter()
    futures = []
    for first in range(0, count, batch):
        commands = []
        for k in range(first, min(count, first + batch)):
            entry = {**template, **order_dict(rng, f"replay-{k}")}
            commands.append((command_key(entry), entry))
        payload, msg_id = journal_message(commands)
        futures.append(await js.publish_async(orders_subject(SYMBOL), payload, headers={"Nats-Msg-Id": msg_id}))
        if len(futures) >= 1000:
            await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
            futures = []
    await asyncio.wait_for(asyncio.gather(*futures), timeout=60)
    console.print(f"  journaled {count:,} more orders directly in {time.perf_counter() - started:.1f} s "
                  f"({batch} per message)")
    return count


async def run(mesh: Mesh, console: Console, res: Results, *, clients: tuple[int, ...], duration_s: float,
              warmup_s: float, open_s: float, peer_s: float, replay_orders: int, profile_s: float,
              quiet_s: float) -> None:
    """Every measurement, in order, against one server and one engine (then its restarted replacement)."""
    server = mesh.server("nats-matching")
    assert server.process is not None
    nc = await client(server)

    async def quiet() -> None:
        if quiet_s > 0:
            await asyncio.to_thread(wait_quiet, quiet_s)

    try:
        started = time.perf_counter()
        node = spawn_matching(mesh, server, "matching")
        res.startup_s = await wait_applied(nc, node, 0, started)
        console.print(f"  engine start-up on an empty journal: {res.startup_s:.3f} s")
        await wait_ready(nc, "$SRV.PING.matching", node)
        check = counting(res.mix)
        for n in clients:
            await quiet()
            gauge = OtherLoad(exclude=[node.proc.pid, server.process.pid])
            before = (cpu_seconds(node.proc.pid), cpu_seconds(node.proc.pid, node.proc.pid),
                      cpu_seconds(server.process.pid))
            journal_before = await applied(nc)
            t0 = time.perf_counter()
            run_, ok = await closed_loop(nc, SUBMIT, order_body(f"c{n}"), clients=n, duration_s=duration_s,
                                         warmup_s=warmup_s, check=check)
            wall = time.perf_counter() - t0
            after = (cpu_seconds(node.proc.pid), cpu_seconds(node.proc.pid, node.proc.pid),
                     cpu_seconds(server.process.pid))
            res.closed[n] = run_
            journal_after = await applied(nc)
            if journal_before and journal_after and journal_after[0] > journal_before[0]:
                res.batch[n] = (journal_after[1] - journal_before[1]) / (journal_after[0] - journal_before[0])
            res.others[f"{n} clients"] = gauge.stop()
            res.node_us[n] = ((after[0] - before[0]) / max(ok, 1) * 1e6, (after[1] - before[1]) / max(ok, 1) * 1e6)
            res.server_cores[n] = (after[2] - before[2]) / wall
            console.print(f"  {n:>3} clients: {fmt_rate(run_.rate)}  p50 {fmt_ms(run_.p50)}  p99 {fmt_ms(run_.p99)}"
                          f"  p99.9 {fmt_ms(run_.p999)}  errors {run_.errors}  node {res.node_us[n][0]:,.0f} µs/order"
                          f"  {res.batch.get(n, 0):,.1f} orders/journal message")
        await quiet()
        gauge = OtherLoad(exclude=[node.proc.pid, server.process.pid])
        run_, _ = await open_loop(nc, SUBMIT, order_body("o1000"), rate=1000.0, duration_s=open_s,
                                  warmup_s=min(1.0, warmup_s), check=no_error)
        res.open[1000.0] = run_
        res.others["open loop"] = gauge.stop()
        console.print(f"  open loop 1,000/s: achieved {fmt_rate(run_.rate)}  p50 {fmt_ms(run_.p50)}  "
                      f"p99 {fmt_ms(run_.p99)}  errors {run_.errors}")
        await quiet()
        gauge = OtherLoad(exclude=[server.process.pid])
        await peers(nc, peer_s, res, console)
        res.others["peers"] = gauge.stop()
        await replay(mesh, server, nc, node, res, replay_orders, console, quiet, profile_s)
    finally:
        await nc.close()
        mesh.close()
    if profile_s > 0 and res.closed and res.closed[max(res.closed)].rate < CLIENTS_TARGET:
        await profile(mesh, max(clients), profile_s, res, console)


async def peers(nc: Client, duration_s: float, res: Results, console: Console) -> None:
    """The named peers: JetStream publish with Nats-Msg-Id into a stream like ORDERS, same server."""
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=jetstream.STREAM, subjects=[jetstream.SUBJECT], storage=StorageType.FILE,
                                     duplicate_window=600.0))
    await jetstream.sequential(nc, min(0.5, duration_s), "warm")
    res.peers["sequential"] = await jetstream.sequential(nc, duration_s, "peer")
    res.peers["pipelined"] = await jetstream.pipelined(nc, duration_s, "peer")
    for name, peer in res.peers.items():
        console.print(f"  peer {name}: {fmt_rate(peer.rate)}"
                      + (f"  p50 {fmt_ms(peer.p50)}  p99 {fmt_ms(peer.p99)}" if peer.p50 else ""))
    await js.delete_stream(jetstream.STREAM)


async def replay(mesh: Mesh, server: NatsServer, nc: Client, node: Child, res: Results, extra: int,
                 console: Console, quiet: Any, profile_s: float) -> None:
    """Top the journal up, let the engine apply it, stop it, drop its snapshot, restart and time the catch-up.

    The top-up goes straight into ORDERS while the engine runs, so the engine applies it and publishes
    its execution reports before it stops: the timed replay then only re-applies, as after a restart.
    """
    now = await applied(nc)
    res.journal_orders = now[1] if now else await journal_last_seq(nc)
    if res.batch:
        res.live_batch = max(1.0, res.batch[max(res.batch)])
    res.journal_topup = await top_up(nc, max(0, extra - res.journal_orders), console,
                                     min(MAX_BATCH, round(res.live_batch)))
    await wait_applied(nc, node, await journal_last_seq(nc), time.perf_counter())
    code = mesh.stop(node)
    console.print(f"  engine stopped (exit {code}) with {await journal_last_seq(nc):,} orders journaled and applied")
    obs = await nc.jetstream().object_store(SNAPSHOTS_OBJECTS)
    with contextlib.suppress(NotFoundError):
        await obs.delete(SNAPSHOT_OBJECT)
    res.replay_seq = await journal_last_seq(nc)
    await quiet()
    assert server.process is not None
    gauge = OtherLoad(exclude=[server.process.pid])
    started = time.perf_counter()
    again = spawn_matching(mesh, server, "matching-replay")
    res.replay_s = await wait_applied(nc, again, res.replay_seq, started)
    caught_up = await applied(nc)
    res.replay_orders = caught_up[1] if caught_up else res.replay_seq
    res.replay_cpu_s = cpu_seconds(again.proc.pid)
    res.others["replay"] = max(0.0, gauge.stop() - cpu_seconds(again.proc.pid) / res.replay_s)
    console.print(f"  replayed {res.replay_orders:,} orders ({res.replay_seq:,} journal messages) in "
                  f"{res.replay_s:.3f} s (start-up {res.startup_s:.3f} s): "
                  f"{fmt_rate(res.replay_rate)} incl., {fmt_rate(res.replay_rate_net)} excl. start-up")
    mesh.stop(again)
    if profile_s > 0 and (res.replay_rate_net or 0) < REPLAY_TARGET:
        with contextlib.suppress(NotFoundError):  # the replayed engine saved one on its way out
            await obs.delete(SNAPSHOT_OBJECT)
        out = mesh.fresh_dir("replay-profile") / "replay.prof"
        profiled = spawn_matching(mesh, server, "matching-replay-profiled", profile_to=out)
        seconds = await wait_applied(nc, profiled, res.replay_seq, time.perf_counter())
        code = mesh.stop(profiled, timeout_s=60.0)
        console.print(f"  profiled replay: {seconds:.1f} s under cProfile (exit {code})")
        res.replay_profile = out if out.exists() else None


async def profile(mesh: Mesh, clients: int, duration_s: float, res: Results, console: Console) -> None:
    """The node under cProfile (every thread) on its own fresh server while `clients` submit."""
    server = mesh.server("nats-profiled")
    out = mesh.fresh_dir("profile") / "matching.prof"
    node = spawn_matching(mesh, server, "matching-profiled", profile_to=out)
    nc = await client(server)
    try:
        await wait_ready(nc, "$SRV.PING.matching", node)
        res.profile_run, _ = await closed_loop(nc, SUBMIT, order_body("prof"), clients=clients,
                                               duration_s=duration_s, warmup_s=0.5, label=f"{clients} clients")
        console.print(f"  profiled node, {clients} clients: {fmt_rate(res.profile_run.rate)} (under cProfile)")
    finally:
        await nc.close()
        code = mesh.stop(node, timeout_s=60.0)
        mesh.close()
    if out.exists():
        res.profile = out
    else:
        console.print(f"  [red]no profile written (exit code {code}); see {node.log}[/red]")


def machine_info_nproc(report: Report) -> str:
    """The core count recorded for the run."""
    return report.machine.get("nproc", "?")




def matching(
    quick: Annotated[bool, typer.Option(help="~40 s smoke run: short points, smaller replay, no profile.")] = False,
    clients: Annotated[str, typer.Option(help="Concurrent client counts, comma-separated.")] = "1,16,64",
    duration: Annotated[float | None, typer.Option(help="Measured seconds per closed-loop point.")] = None,
    replay_orders: Annotated[int | None, typer.Option(help="Journal at least this many orders before the "
                                                      "replay (topped up directly into ORDERS).")] = None,
    profile_duration: Annotated[float | None, typer.Option(help="Seconds of profiled load when the 64-client "
                                                           "target is missed (0 = skip).")] = None,
    write: WriteOption = False,
    out: Annotated[Path, typer.Option(help="Markdown file to refresh.")] = BENCHMARKS_MD,
    keep: Annotated[bool, typer.Option(help="Keep the temp dir (logs, data, profile).")] = False,
    wait_quiet_s: Annotated[float, typer.Option("--wait-quiet", help="Wait up to this many seconds before each "
                                                "point for other processes to go quiet (shared machines).")] = 0.0,
    engines: Annotated[int, typer.Option("--engines", min=1, help="Engine processes the instruments are spread "
                                         "over for the spread table (measured against one engine).")] = 2,
) -> None:
    """Matching: journaled orders/s through `matching.<instrument>.submit` (1/16/64 clients), p99 at 1,000/s,
    replay rate; then the instruments spread over `--engines` processes against one engine."""
    counts = client_counts(clients)
    console = Console() if Console().is_terminal else Console(width=200)
    res = Results()
    report = Report(command=command_line("matching"), date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    machine=machine_info())
    with bench_mesh("qt-bench-matching-", keep=keep, console=console) as mesh:
        asyncio.run(run(mesh, console, res, clients=counts, duration_s=duration or (1.5 if quick else 5.0),
                        warmup_s=0.3 if quick else 1.0, open_s=2.0 if quick else 5.0,
                        peer_s=1.0 if quick else 3.0,
                        replay_orders=replay_orders if replay_orders is not None else
                        (20_000 if quick else 60_000),
                        profile_s=profile_duration if profile_duration is not None else (0.0 if quick else 4.0),
                        quiet_s=wait_quiet_s))
        res.engines = asyncio.run(spread(mesh, console, engines, clients=max(counts),
                                         duration_s=duration or (1.5 if quick else 5.0),
                                         warmup_s=0.3 if quick else 1.0))
        report.targets = targets(res, max(counts))
        report.sections = sections(res)
        for extra in (engines_section(res.engines), profile_section(res), replay_profile_section(res)):
            if extra is not None:
                report.sections.append(extra)
        reason = why(res, max(counts))  # reads the profiles: before the work dir goes
    report.setup = [
        "one nats-server 127.0.0.1, our nats.conf (`sync_interval: always`: every journal append fsynced)",
        "one `python -m nodes.matching` process (all instruments; load on BTC-USD only), default "
        "`QT_MATCHING_SNAPSHOT_EVERY`; the spread table: 1 and `--engines` processes, load on every instrument",
        "clients: nats-py in this process, msgpack bodies (integer units), unique order ids, one request in "
        "flight per client; the node replies once the engine applied the journaled order",
    ]
    report.caveats += caveats(res)
    busy = {point: cores for point, cores in res.others.items() if cores > DISTURBED}
    if busy:
        report.caveats.append(
            f"Other processes on this {machine_info_nproc(report)}-core machine used CPU during: "
            + ", ".join(f"{point} ({cores:.2f} cores)" for point, cores in busy.items())
            + "; rates there are lower, and latencies higher, than on a quiet machine (CPU/order is robust).")
    present(console, report, reason, write=write, out=out, name="matching",
            render=markdown)
