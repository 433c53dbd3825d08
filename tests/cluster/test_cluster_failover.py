"""`qt up --cluster 3`'s shape: three nats-servers, R3 streams and buckets, nodes on the server list.

SIGKILL one server under an order flow: orders keep being acknowledged, and nothing acknowledged is lost.
"""

from __future__ import annotations

import asyncio
import os
import random
import time

import pytest

from contracts.subjects import BUCKETS, ORDERS_STREAM, STREAMS
from tests.clearing.platform import Platform
from tests.cluster.flow import OrderFlow, Recovery, check_invariants, wait_instances


async def stream_leader(platform: Platform, stream: str) -> str:
    """The server name leading `stream`'s RAFT group."""
    info = await platform.nc.jetstream().stream_info(stream)
    assert info.cluster is not None and info.cluster.leader
    return info.cluster.leader


async def test_every_stream_and_bucket_is_kept_by_three_servers(cluster: Platform) -> None:
    js = cluster.nc.jetstream()
    for name in [s.name for s in STREAMS] + [f"KV_{b.name}" for b in BUCKETS] + ["OBJ_snapshots"]:
        info = await js.stream_info(name)
        assert info.config.num_replicas == 3, name
        assert info.cluster is not None and len(info.cluster.replicas or []) == 2, name


@pytest.mark.soak  # test_chaos.py runs the same fault first (and three more); this one alone, by hand
async def test_orders_keep_working_when_a_server_dies(cluster: Platform) -> None:
    seed = int(os.environ.get("QT_PROPERTY_SEED", str(random.randrange(2**32))))
    await cluster.start("wallet")
    await cluster.start("matching")
    await cluster.start("clearing")
    await cluster.start("clearing", instance="2")
    await wait_instances(cluster.nc, "clearing", 2)
    flow = OrderFlow(cluster.nc, [f"cl{i:02d}" for i in range(8)], seed)
    await flow.fund()
    flow.start()
    await flow.wait_acks(40)

    leader = await stream_leader(cluster, ORDERS_STREAM)  # the journal's leader: the worst one to lose
    server = next(s for s in cluster.members if s.name == leader)
    assert server.process is not None
    recovery = Recovery(f"nats-server {leader}", time.monotonic())
    server.process.kill()  # SIGKILL, by the PID we started
    await asyncio.to_thread(server.process.wait)
    await flow.wait_acks(40)
    await flow.recovered(recovery)
    await flow.stop()

    context = f"seed={seed} outcomes={dict(flow.outcomes)} retries={flow.retries}"
    print(f"\nRTO {recovery.component}: first ack {recovery.first_ack_s:.2f}s, "
          f"every worker {recovery.all_workers_s:.2f}s; {context}")
    assert await stream_leader(cluster, ORDERS_STREAM) != leader
    await check_invariants(cluster, flow, context)
