"""`qt bench matching --engines N`: the listed instruments spread over N engine processes, against one
engine owning them all, in the same run: submitted orders/s across every instrument, then the replay.

Each layout gets a fresh nats-server. The load is the same closed-loop mix on every instrument (the
clients split evenly), each instrument's orders on its own `matching.<instrument>.submit`; then the
engines are stopped, their snapshots deleted, and restarted: the replay runs until every instrument's
engine has applied its whole journal.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

import msgpack
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from rich.console import Console

from contracts.credentials import nkey_seed_path
from contracts.errors import QtError
from contracts.instruments import INSTRUMENTS, engine_instruments
from contracts.subjects import ORDERS_STREAM, SNAPSHOTS_OBJECTS, MatchingEndpoint, matching_subject, orders_subject
from mesh.rpc import call
from tooling.bench.harness import BodyFactory, closed_loop
from tooling.bench.matching_tables import EnginesRun
from tooling.bench.mesh import Child, Mesh, client, wait_ready
from tooling.bench.stats import Run, fmt_rate
from tooling.natsserver import NatsServer


def instrument_order(symbol: str, tag: str, seed: int = 7) -> BodyFactory:
    """The closed-loop mix on `symbol`: limit orders around its reference price (70% passive, 30% crossing)."""
    spec = INSTRUMENTS[symbol]
    step = max(spec.tick, 10**spec.price_scale)  # 1.00 of the quote asset
    rngs: dict[int, random.Random] = {}

    def make(c: int, i: int) -> bytes:
        rng = rngs.get(c)
        if rng is None:
            rng = rngs[c] = random.Random(seed * 1_000_003 + c)
        buy = rng.random() < 0.5
        crossing = rng.random() < 0.3  # through the reference by up to 5.00, a third of them IOC
        offset = -rng.randint(0, 5) * step if crossing else rng.randint(1, 50) * step
        tif = "IOC" if crossing and rng.random() < 1 / 3 else "GTC"
        qty = max(spec.min_qty, rng.randint(1, 200) * 1000)
        price = spec.reference_price - offset if buy else spec.reference_price + offset
        return msgpack.packb({"order_id": f"{tag}-{c}-{i}", "account": f"acct{rng.randrange(1000)}",
                              "instrument": symbol, "side": "BUY" if buy else "SELL", "type": "LIMIT", "tif": tif,
                              "price": price, "qty": qty - qty % spec.lot}, use_bin_type=True)

    return make


def spawn_engines(mesh: Mesh, server: NatsServer, engines: int, tag: str) -> list[Child]:
    """`engines` `python -m nodes.matching` processes, each given its share of the instruments."""
    children = []
    for n in range(engines):
        env = {"QT_NATS_URL": server.url, "QT_DATA_DIR": str(mesh.fresh_dir(f"{tag}-engine{n}")),
               "QT_NKEY_SEED": str(nkey_seed_path(server.data_dir, "matching")),
               "QT_MATCHING_INSTRUMENTS": ",".join(engine_instruments(n, engines))}
        children.append(mesh.spawn(f"{tag}-engine{n}", ["-m", "nodes.matching"], env))
    return children


async def serving(nc: Client, children: list[Child], engines: int) -> None:
    """Until every instrument answers on its own subject (its engine has replayed and subscribed)."""
    for n, child in enumerate(children):
        for symbol in engine_instruments(n, engines):
            await wait_ready(nc, matching_subject(symbol, MatchingEndpoint.STATUS), child, timeout_s=300.0)


async def applied_commands(nc: Client) -> dict[str, tuple[int, int]] | None:
    """Per instrument (applied journal sequence, commands applied); None while one does not answer."""
    out = {}
    for symbol in INSTRUMENTS:
        try:
            reply = await call(nc, matching_subject(symbol, MatchingEndpoint.STATUS), {"instrument": symbol},
                               timeout=0.5)
        except (QtError, TimeoutError):
            return None
        status = reply["instruments"][0]
        out[symbol] = (int(status["applied_seq"]), int(status["applied_commands"]))
    return out


async def journal_ends(nc: Client) -> dict[str, int]:
    """Each instrument's last ORDERS sequence (0 when empty)."""
    ends = {}
    for symbol in INSTRUMENTS:
        try:
            ends[symbol] = (await nc.jetstream().get_last_msg(ORDERS_STREAM, orders_subject(symbol))).seq or 0
        except NotFoundError:
            ends[symbol] = 0
    return ends


async def submit_everywhere(nc: Client, clients: int, duration_s: float, warmup_s: float, tag: str) -> Run:
    """The closed-loop mix on every instrument at once, `clients` split evenly; one Run summed over them."""
    per = max(1, clients // len(INSTRUMENTS))
    runs = await asyncio.gather(*(
        closed_loop(nc, matching_subject(symbol, MatchingEndpoint.SUBMIT), instrument_order(symbol, f"{tag}-{symbol}"),
                    clients=per, duration_s=duration_s, warmup_s=warmup_s, label=symbol)
        for symbol in INSTRUMENTS))
    ok, errors = sum(r.ok for r, _ in runs), sum(r.errors for r, _ in runs)
    seconds = max(r.seconds for r, _ in runs)
    p99s = [r.p99 for r, _ in runs if r.p99 is not None]
    return Run(f"{per * len(INSTRUMENTS)} clients", ok, errors, seconds, p99=max(p99s) if p99s else None)


async def replay_all(mesh: Mesh, server: NatsServer, nc: Client, children: list[Child], engines: int,
                     tag: str) -> tuple[int, float]:
    """Stop the engines, delete every snapshot, restart them: (orders replayed, seconds until all caught up)."""
    for child in children:
        mesh.stop(child)
    obs = await nc.jetstream().object_store(SNAPSHOTS_OBJECTS)
    for symbol in INSTRUMENTS:
        with contextlib.suppress(NotFoundError):
            await obs.delete(f"matching.{symbol}")
    ends = await journal_ends(nc)
    started = time.perf_counter()
    again = spawn_engines(mesh, server, engines, f"{tag}-replay")
    while True:
        for child in again:
            if child.proc.poll() is not None:
                raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
        now = await applied_commands(nc)
        if now is not None and all(now[s][0] >= ends[s] for s in INSTRUMENTS):
            seconds = time.perf_counter() - started
            break
        if time.perf_counter() - started > 600:
            raise TimeoutError(f"{tag}: the engines did not catch up in 600 s")
        await asyncio.sleep(0.05)
    for child in again:
        mesh.stop(child)
    return sum(commands for _, commands in now.values()), seconds


async def layout(mesh: Mesh, console: Console, engines: int, clients: int, duration_s: float,
                 warmup_s: float) -> EnginesRun:
    """One layout on its own server: submit load across every instrument, then the replay."""
    tag = f"engines{engines}"
    server = mesh.server(f"nats-{tag}")
    nc = await client(server)
    try:
        children = spawn_engines(mesh, server, engines, tag)
        await serving(nc, children, engines)
        submitted = await submit_everywhere(nc, clients, duration_s, warmup_s, tag)
        orders, seconds = await replay_all(mesh, server, nc, children, engines, tag)
    finally:
        await nc.close()
    result = EnginesRun(engines, submitted, orders, seconds)
    console.print(f"  {engines} engine(s): {fmt_rate(submitted.rate)} submitted over {len(INSTRUMENTS)} "
                  f"instruments, errors {submitted.errors}; replayed {orders:,} orders in {seconds:.2f} s "
                  f"({fmt_rate(result.replay_rate)})")
    return result


async def spread(mesh: Mesh, console: Console, engines: int, *, clients: int, duration_s: float,
                 warmup_s: float) -> dict[int, EnginesRun]:
    """One engine owning every instrument, then `engines` splitting them, in the same run."""
    out: dict[int, EnginesRun] = {}
    for count in sorted({1, engines}):
        out[count] = await layout(mesh, console, count, clients, duration_s, warmup_s)
    return out
