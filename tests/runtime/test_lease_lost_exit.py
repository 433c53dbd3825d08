"""A node whose lease another owner takes stops acting and exits with `EXIT_LEASE_LOST`, not as a crash:
the code a supervisor (and the chaos test's keeper) tells a deliberate stand-down from a bug by."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.exits import EXIT_LEASE_LOST
from contracts.subjects import LEASES_BUCKET, wallet_group
from tests.conftest import wait_for_service
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer
from tooling.supervisor import describe_exit

#: A holder renews every third of its 10 s TTL: it finds the lease taken within ~3.3 s, then winds down.
EXIT_WAIT_S = 30.0


async def take_lease(nc: Client, key: str) -> None:
    """Write the lease over as another owner would after an expiry: the holder's next renewal fails."""
    leases = await nc.jetstream().key_value(LEASES_BUCKET)
    await leases.put(key, json.dumps({"owner": "thief", "host": "elsewhere", "pid": 1, "data_dir": "/"}).encode())


async def exit_code(node: NodeProcess) -> int:
    assert node.proc is not None
    return await asyncio.to_thread(node.proc.wait, EXIT_WAIT_S)


@pytest.mark.parametrize(("module", "service", "key"), [
    ("nodes.wallet", "wallet", wallet_group(0)),
    ("nodes.matching", "matching", "matching.BTC-USD"),
])
async def test_a_node_whose_lease_is_taken_exits_with_the_lease_lost_code(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess],
    module: str, service: str, key: str,
) -> None:
    node = NodeProcess(module, own_nats.url, tmp_path / service, own_nats.data_dir).start()
    processes.append(node)
    await wait_for_service(own_nc, service, timeout_s=30)

    await take_lease(own_nc, key)

    assert await exit_code(node) == EXIT_LEASE_LOST
    log = node.log_path.read_text()
    assert "lease lost, exiting" in log and "Traceback" not in log
    assert describe_exit(EXIT_LEASE_LOST) == "code 75: lease lost"
