"""SIGKILL one of two wallet partitions in the middle of an order flow: after it restarts on its data dir
every saga is final, nothing acknowledged is lost, every asset is conserved with its fees over both
ledgers, no hold outlives its order, and both partitions' chains verify."""

from __future__ import annotations

import os
import random

import pytest

from contracts.subjects import wallet_partition
from tests.clearing.platform import FEES, Platform
from tests.cluster.flow import OrderFlow, Recovery, check_invariants, kill_node

ACKS = 30


@pytest.mark.slow
async def test_a_wallet_partition_killed_under_flow_loses_and_leaks_nothing(fresh: Platform) -> None:
    seed = int(os.environ.get("QT_PROPERTY_SEED", str(random.randrange(2**32))))
    fresh.partitions = 2
    await fresh.start_all()
    # accounts on both partitions; the fee account's partition takes a leg of every fill
    flow = OrderFlow(fresh.nc, [f"pk{i:02d}" for i in range(8)], seed, partitions=fresh.partitions)
    assert {wallet_partition(a, 2) for a in flow.accounts} == {0, 1}
    await flow.fund()
    flow.start()
    await flow.wait_acks(ACKS)

    victim = wallet_partition(FEES, 2)
    wallet = next(p for p in fresh.procs if p.extra_env.get("QT_WALLET_PARTITION") == str(victim))
    recovery, _ = await kill_node(fresh, wallet, flow, f"wallet p{victim}", f"-p{victim}")
    await flow.wait_acks(ACKS)
    await flow.stop()

    context = f"seed={seed} outcomes={dict(flow.outcomes)} retries={flow.retries}"
    assert isinstance(recovery, Recovery) and recovery.all_workers_s is not None, context
    await check_invariants(fresh, flow, context)
