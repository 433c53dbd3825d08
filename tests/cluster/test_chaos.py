"""Chaos on the cluster: under a random order flow, SIGKILL a nats-server, then one of two wallet partitions,
one of the two matching engines and a clearing instance, each brought back the way `qt up` supervises it (same
data dir and, for the engine, the same instruments). A node that exits on its own is restarted as that supervisor
would (a wallet whose lease ran out while the servers elected the leases bucket's leader exits by design,
with `EXIT_LEASE_LOST`); such restarts are printed, and one that exited any other way fails the test.

Afterwards nothing acknowledged is lost, every asset is conserved with its fees, no hold outlives its
order, every saga is final, the wallet's chain verifies and the books equal a fresh replay of the
journal. Recovery time per component (SIGKILL until every worker is acknowledged again) and the load
held are printed. `QT_CHAOS_ACKS` (orders acknowledged between faults) bounds the run; CI keeps it small.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from contracts.exits import EXIT_LEASE_LOST
from contracts.subjects import ORDERS_STREAM
from tests.clearing.platform import Platform, Restart
from tests.cluster.flow import OrderFlow, Recovery, check_invariants, kill_node, wait_instances

ACKS = int(os.environ.get("QT_CHAOS_ACKS", "40"))


@pytest.mark.slow
async def test_chaos_server_wallet_engine_clearing_killed_under_flow(cluster: Platform) -> None:
    seed = int(os.environ.get("QT_PROPERTY_SEED", str(random.randrange(2**32))))
    cluster.partitions = 2
    wallets = await cluster.start_wallets()
    engine, _ = await cluster.start_engines()  # the flow's AAPL and BTC-USD are on different engines
    clearing = await cluster.start("clearing")
    await cluster.start("clearing", instance="2")
    await wait_instances(cluster.nc, "clearing", 2)
    await cluster.start("market_data", wait=False)
    restarts: list[Restart] = []
    keeper = asyncio.create_task(cluster.keep_running(restarts))
    try:
        flow = OrderFlow(cluster.nc, [f"ch{i:02d}" for i in range(10)], seed, partitions=cluster.partitions)
        await flow.fund()
        started = time.monotonic()
        flow.start()
        await flow.wait_acks(ACKS)
        recoveries: list[Recovery] = []

        info = await cluster.nc.jetstream().stream_info(ORDERS_STREAM)  # the journal's leader: the worst to lose
        server = next(s for s in cluster.members if info.cluster is not None and s.name == info.cluster.leader)
        assert server.process is not None
        recovery = Recovery(f"nats-server ({server.name}, ORDERS leader)", time.monotonic())
        server.process.kill()  # SIGKILL, by the PID we started
        await asyncio.to_thread(server.process.wait)
        recoveries.append(await flow.recovered(recovery))
        await flow.wait_acks(ACKS)
        server.spawn(log_path=cluster.root / f"{server.name}.log")  # as qt up's keeper does: same store
        await asyncio.to_thread(server.wait_healthy, 60)

        victim = random.Random(seed).randrange(cluster.partitions)  # one wallet partition of two
        for proc, name, instance in ((wallets[victim], f"wallet p{victim}", f"-p{victim}"), (engine, "matching", ""),
                                     (clearing, "clearing", "")):
            recovery, _ = await kill_node(cluster, proc, flow, name, instance)
            recoveries.append(recovery)
            await flow.wait_acks(ACKS)
        await flow.stop()
        elapsed = time.monotonic() - started

        restarted = [str(r) for r in restarts]
        context = f"seed={seed} outcomes={dict(flow.outcomes)} retries={flow.retries} restarted={restarted}"
        print(f"\nchaos: {flow.acks} orders acknowledged in {elapsed:.1f}s ({flow.acks / elapsed:.1f}/s, "
              f"{flow.workers} clients) through 4 faults; {context}")
        for r in recoveries:
            print(f"RTO {r.component}: first ack after {r.first_ack_s:.2f}s, every client after {r.all_workers_s:.2f}s")
        await check_invariants(cluster, flow, context)
        crashed = [str(r) for r in restarts if r.code != EXIT_LEASE_LOST]
        assert not crashed, f"a node exited on its own other than by losing its lease: {crashed}; {context}"
    finally:
        keeper.cancel()  # before teardown kills the nodes
