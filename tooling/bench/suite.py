"""The whole `qt bench wallet` run: every section in order, into one `Report`."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from rich.console import Console

from tooling.bench import store as store_bench
from tooling.bench.jetstream import bench_jetstream
from tooling.bench.mesh import DISTURBED, Mesh, OtherLoad, wait_quiet
from tooling.bench.profile import profile_sections
from tooling.bench.rebuild import bench_rebuild
from tooling.bench.report import SECTIONS, Report, Section, Target, machine_info, print_section
from tooling.bench.stats import Run
from tooling.bench.tables import (
    jetstream_section,
    nats_sections,
    partitions_section,
    rebuild_section,
    store_sections,
)
from tooling.bench.wallet import NatsPlan, NatsResults, bench_echo, bench_partitions, bench_wallet, profile_wallet

T = TypeVar("T")
Produced = tuple[list[Section], list[Target]]


@dataclass(frozen=True)
class Plan:
    """Everything one run does, and for how long."""

    nats: NatsPlan = field(default_factory=NatsPlan)
    store: store_bench.StorePlan = field(default_factory=store_bench.StorePlan)
    js_duration_s: float = 4.0
    rebuild_events: int = 1_000_000
    sections: tuple[str, ...] = SECTIONS
    wait_quiet_s: float = 0.0
    """Before each section, wait up to this long for the rest of the machine to go quiet."""
    retries: int = 1
    """How many times a section (or NATS point) disturbed by other processes is run again."""


@dataclass
class Bench:
    """One run in progress: the plan, the processes, the console."""

    plan: Plan
    mesh: Mesh
    console: Console


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on uvloop (the event loop every node uses), else asyncio's."""
    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    return uvloop.run(coro)


def run_suite(plan: Plan, mesh: Mesh, console: Console, command: str) -> Report:
    """Run the selected sections in order; print each table as soon as it exists."""
    report = Report(command=command, date=dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
                    machine=machine_info(), setup=_setup(plan))
    bench = Bench(plan, mesh, console)
    runners: dict[str, Callable[[Bench], Produced]] = {
        "nats": _nats, "partitions": _partitions, "profile": _profile, "jetstream": _jetstream, "store": _store,
        "rebuild": _rebuild,
    }
    others: dict[str, float] = {}
    for name in SECTIONS:
        if name not in plan.sections:
            continue
        console.rule(name)
        best: tuple[float, Produced] | None = None
        for attempt in range(plan.retries + 1):
            if plan.wait_quiet_s > 0 or attempt:
                waited, load = wait_quiet(max(plan.wait_quiet_s, 10.0))
                console.print(f"  [dim]waited {waited:.0f} s for a quiet machine (others at {load:.2f} cores)[/dim]")
            gauge = OtherLoad()
            produced = runners[name](bench)
            load = gauge.stop()
            if best is None or load < best[0]:  # keep the least disturbed attempt
                best = (load, produced)
            # the NATS section reruns its own disturbed points; the others rerun as a whole
            if name == "nats" or load <= DISTURBED or attempt == plan.retries:
                break
            console.print(f"  [yellow]{name}: others used {load:.2f} cores; running it again[/yellow]")
        assert best is not None
        others[name], (sections, targets) = best
        report.targets += targets
        for section in sections:
            report.sections.append(section)
            print_section(console, section)
    report.machine["load avg at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    report.caveats.append(
        "The machine is shared: other agents may run tests on it at the same time. Cores used by "
        "processes other than this benchmark's, averaged over each section (of 2): "
        + ", ".join(f"{name} {cores:.2f}" for name, cores in others.items())
        + f". A section or NATS point above {DISTURBED} was run again (up to {plan.retries} times) and the "
        "least disturbed attempt kept; a figure still high means every attempt was noisy (lower rates, "
        "longer tails). The NATS tables give the figure per point.")
    return report


def _setup(plan: Plan) -> list[str]:
    return [
        "NATS sections: three processes share the 2 cores: nats-server (loopback, nkey auth, nats.conf "
        "with `sync_interval: always`), the node under test (`python -m nodes.wallet`: one asyncio "
        "loop running its SQLite group commits and its outbox relay; or the echo peer), and the bench "
        "client (this process, uvloop, one connection, raw `nc.request` with msgpack bodies).",
        f"Closed loop: {plan.nats.warmup_s:g} s warm-up then {plan.nats.duration_s:g} s measured per point; "
        "each deposit is 1.00 USD to one of 1,000 accounts with a unique op_id. A fresh nats-server and "
        "wallet data dir per sync mode (QT_WALLET_SYNC).",
        "In-process sections (store, rebuild) run in this process alone.",
    ]


def _nats(bench: Bench) -> Produced:
    results = NatsResults()
    for sync in bench.plan.nats.syncs:
        run_async(bench_wallet(bench.mesh, bench.plan.nats, sync, results, bench.console))
    run_async(bench_echo(bench.mesh, bench.plan.nats, results, bench.console))
    return nats_sections(bench.plan.nats, results)


def _partitions(bench: Bench) -> Produced:
    results = NatsResults()
    run_async(bench_partitions(bench.mesh, bench.plan.nats, results, bench.console))
    return [partitions_section(bench.plan.nats, results)], []


def _profile(bench: Bench) -> Produced:
    nats = bench.plan.nats
    if nats.profile_s <= 0:
        return [], []
    results = NatsResults()
    run_async(profile_wallet(bench.mesh, nats, results, bench.console))
    if results.profile is None or results.profile_run is None:
        return [], []
    sections = profile_sections(results.profile, f"Profile of the wallet process (FULL, {max(nats.clients)} "
                                "clients)", results.profile_run.seconds + 0.5)
    sections[0].notes.append(f"Throughput while profiled: {results.profile_run.rate:,.0f} deposits/s "
                             "(cProfile slows Python code roughly 2x).")
    return sections, []


def _jetstream(bench: Bench) -> Produced:
    return [jetstream_section(run_async(bench_jetstream(bench.mesh, bench.plan.js_duration_s, bench.console)))], []


def _store(bench: Bench) -> Produced:
    """Ours at every batch size and sync mode, the peers, and a profile of the largest batch."""
    plan, root = bench.plan.store, bench.mesh.fresh_dir("store")
    ours: dict[tuple[int, str], Run] = {}
    peers: dict[str, Run] = {}
    for sync in plan.syncs:
        for batch in plan.batches:
            run = store_bench.store_appends(root / f"store-{batch}-{sync}.sqlite", batch=batch, sync=sync,
                                            duration_s=plan.duration_s)
            ours[(batch, sync)] = run
            peer = store_bench.sqlite_rows(root / f"peer-{batch}-{sync}.sqlite", rows=batch, sync=sync,
                                           duration_s=plan.duration_s)
            peers[peer.label] = peer
            bench.console.print(f"  {run.label}: {run.rate:,.0f} events/s   {peer.label}: {peer.rate:,.0f} rows/s")
        aio = run_async(store_bench.aiosqlite_rows(root / f"aio-{sync}.sqlite", sync=sync,
                                                   duration_s=plan.duration_s))
        peers[aio.label] = aio
        bench.console.print(f"  {aio.label}: {aio.rate:,.0f} rows/s")
    sections, targets = store_sections(ours, peers)
    batch = max(plan.batches)
    prof, run = store_bench.profile_appends(root, batch=batch, sync="FULL", duration_s=plan.duration_s)
    profiled = profile_sections(prof, f"Profile of EventStore.execute_batch (batch {batch}, FULL)", run.seconds)
    profiled[0].notes.append(f"Profiled in-process, nothing else running; {run.rate:,.0f} events/s under cProfile.")
    return sections + profiled, targets


def _rebuild(bench: Bench) -> Produced:
    root = bench.mesh.fresh_dir("rebuild")
    section, targets = rebuild_section(bench_rebuild(root, events=bench.plan.rebuild_events))
    return [section], targets
