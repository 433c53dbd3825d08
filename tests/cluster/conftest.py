"""A 3-server NATS cluster on loopback (R3 streams and buckets) with node processes on the server list."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from contracts.credentials import nkey_seed_path
from mesh.jetstream import ensure_all
from tests.clearing.platform import Platform
from tests.conftest import DELIBERATE_REFUSALS
from tooling.natsserver import NatsServer, cluster_of, free_port, permission_violations, servers_url, start_all

MEMBERS = 3
#: A reply to a request a service received on its previous connection, before the server died and the
#: service reconnected to another member: `allow_responses` is per connection, so the new one may not
#: send it. The requester times out and retries (same saga id / op id); no role lacks a permission.
STALE_REPLY = re.compile(r'Publish Violation - Subject "_INBOX')


def assert_no_refusals(log_path: Path) -> None:
    """Fail on any refusal but a stale reply after a reconnect: a role is missing a permission it needs."""
    refused = [line for line in permission_violations(log_path, ignore_clients=DELIBERATE_REFUSALS)
               if not STALE_REPLY.search(line)]
    assert not refused, "nats-server refused a permission:\n" + "\n".join(refused[:20])


def server_log(root: Path, server: NatsServer) -> Path:
    """Where a member logs (checked for permission refusals at teardown)."""
    return root / f"{server.name}.log"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Platform]:
    """Three nats-servers in one cluster, every stream and bucket R3, an ops client on the server list;
    the test starts the nodes. Every server and node is stopped by the PID we started."""
    servers = cluster_of(tmp_path / "nats", [free_port() for _ in range(MEMBERS)],
                         [free_port() for _ in range(MEMBERS)], [free_port() for _ in range(MEMBERS)])
    try:
        start_all(servers, log_paths=[server_log(tmp_path, s) for s in servers])
        url = servers_url(servers)
        client = await nats.connect(url.split(","), nkeys_seed=str(nkey_seed_path(servers[0].data_dir, "ops")),
                                    max_reconnect_attempts=-1, reconnect_time_wait=0.2, name="tests")
        platform = Platform(servers[0], client, tmp_path, nats_url=url, members=servers)
        try:
            await ensure_all(client.jetstream(), replicas=MEMBERS)
            yield platform
        finally:
            platform.kill_all()
            await client.close()
    finally:
        for server in servers:
            server.stop()
    for server in servers:
        assert_no_refusals(server_log(tmp_path, server))
