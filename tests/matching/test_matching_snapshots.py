"""Snapshots packed by a forked child while the engine goes on applying: an engine SIGKILLed after them
restarts from the newest one and stands exactly where an uninterrupted run of its journal does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts.subjects import matching_subject
from mesh.rpc import call
from tests.matching.journal_replay import replay_journal
from tests.matching.node_client import matching, start_matching
from tests.matching.test_matching_crash import SUBMIT, burst
from tests.polling import eventually
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer

EVERY = "40"  # journal messages between snapshots
ORDERS = 600
IN_FLIGHT = 4


async def status(nc: Client) -> dict[str, Any]:
    reply = await call(nc, matching_subject("BTC-USD", "status"), {"instrument": "BTC-USD"})
    return dict(reply["instruments"][0])


async def test_an_engine_killed_after_forked_snapshots_restarts_from_the_newest_one(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    data = tmp_path / "matching"
    node = await start_matching(own_nats, data, own_nc, QT_MATCHING_SNAPSHOT_EVERY=EVERY)
    processes.append(node)
    queue = list(reversed(burst(seed=11)[:ORDERS]))

    async def worker() -> None:
        while queue:
            await call(own_nc, SUBMIT, queue.pop(), timeout=5)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    before = await eventually(lambda: status(own_nc), lambda s: s["last_snapshot_seq"] > int(EVERY),
                              timeout_s=20, what="snapshots saved under load")
    node.kill9()

    processes.append(await start_matching(own_nats, data, own_nc, QT_MATCHING_SNAPSHOT_EVERY=EVERY))
    after = await status(own_nc)
    assert after["last_snapshot_seq"] >= before["last_snapshot_seq"], "restarted from the newest snapshot"
    expected, journaled = await replay_journal(own_nc, "BTC-USD")
    assert sum(journaled.values()) == ORDERS and set(journaled.values()) == {1}
    book = await matching(own_nc, "book", instrument="BTC-USD", depth=500)
    assert (book["checksum"], book["seq"]) == (expected.book.checksum(), expected.applied_seq)
    assert after["applied_seq"] == expected.applied_seq
