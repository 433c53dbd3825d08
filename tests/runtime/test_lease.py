"""Leases against a real nats-server: a bucket that does not answer is waited for, not a reason to exit."""

from __future__ import annotations

import asyncio
from pathlib import Path

import nats
from nats.aio.client import Client

from contracts.credentials import nkey_seed_path
from contracts.subjects import LEASES_BUCKET
from mesh.jetstream import ensure_named
from nodes.runtime.lease import Lease
from tooling.natsserver import NatsServer


async def test_acquire_waits_while_the_server_is_down_and_wins_once_it_is_back(
    own_nats: NatsServer, tmp_path: Path
) -> None:
    """A node (re)started while its server is down or its cluster elects the leases bucket's leader keeps
    trying to acquire; before, the first unanswered create raised out of `acquire` and the node exited."""
    nc = await nats.connect(own_nats.url, nkeys_seed=str(nkey_seed_path(own_nats.data_dir, "ops")),
                            max_reconnect_attempts=-1, reconnect_time_wait=0.2)
    try:
        js = nc.jetstream(timeout=1)
        await ensure_named(js, streams=(), buckets=(LEASES_BUCKET,))
        lease = Lease(await js.key_value(LEASES_BUCKET), "wallet.p9", tmp_path / "node")
        own_nats.stop()

        acquiring = asyncio.create_task(lease.acquire(poll_s=0.1))
        await asyncio.sleep(2.5)  # a create and a get time out in 1 s each: several attempts fail meanwhile
        assert not acquiring.done(), acquiring

        await asyncio.to_thread(own_nats.start, log_path=tmp_path / "nats-server.log")
        token = await asyncio.wait_for(acquiring, 30)
        assert token > 0 and lease.held()
        assert (await (await js.key_value(LEASES_BUCKET)).get("wallet.p9")).revision == token
    finally:
        await nc.close()


async def test_an_attempt_takes_back_its_own_landed_create_but_not_a_live_peers_lease(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path
) -> None:
    """A create whose answer was lost may have landed: the next attempt finds its own owner id and renews it
    (compare-and-set) instead of standing by until the TTL; a live peer's lease is left alone."""
    js = own_nc.jetstream()
    await ensure_named(js, streams=(), buckets=(LEASES_BUCKET,))
    bucket = await js.key_value(LEASES_BUCKET)
    mine = Lease(bucket, "wallet.p7", tmp_path / "me")
    landed = await bucket.create("wallet.p7", mine._value())  # the lost create, as the server stored it
    assert await mine._try_acquire()
    assert mine.token > landed and mine.held()

    peer = Lease(bucket, "wallet.p8", tmp_path / "peer")
    assert await peer._try_acquire()
    other = Lease(bucket, "wallet.p8", tmp_path / "other")
    assert not await other._try_acquire()
    assert (await bucket.get("wallet.p8")).revision == peer.token
