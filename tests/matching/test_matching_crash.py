"""SIGKILL of the engine during a burst of 10,000 orders (64 in flight, so journaled in batches): after
restart every acknowledged command is applied exactly once and the book's checksum equals an
uninterrupted run of the same journal."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.errors import QtError
from contracts.subjects import matching_subject
from mesh.rpc import call
from tests.matching.journal_replay import exec_reports, read_stream, replay_journal
from tests.matching.node_client import matching, start_matching
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer

SUBMIT = matching_subject("BTC-USD", "submit")
ORDER = matching_subject("BTC-USD", "order")

TOTAL = 10_000
IN_FLIGHT = 64
KILL_AFTER = 3_000
MID = 6_750_000


def burst(seed: int = 7) -> list[dict]:
    rng = random.Random(seed)
    orders = []
    for i in range(TOTAL):
        side = rng.choice(("BUY", "SELL"))
        aggressive = rng.random() < 0.1
        offset = rng.randint(0, 50) * (1 if side == "SELL" else -1) * (-1 if aggressive else 1)
        orders.append({"order_id": f"o{i}", "account": f"acct{rng.randint(0, 9)}", "instrument": "BTC-USD",
                       "side": side, "price": MID + offset, "qty": rng.randint(1, 100) * 1000,
                       "tif": "IOC" if aggressive else "GTC"})
    return orders


async def _send(nc: Client, orders: list[dict], acked: dict[str, dict], stop: asyncio.Event | None) -> None:
    queue = list(reversed(orders))

    async def worker() -> None:
        while queue and not (stop and stop.is_set()):
            body = queue.pop()
            try:
                acked[body["order_id"]] = await call(nc, SUBMIT, body, timeout=5)
            except QtError:
                if stop is None:
                    raise
                return

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


@pytest.mark.slow
async def test_sigkill_mid_burst_applies_every_acknowledged_order_exactly_once(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    data = tmp_path / "matching"
    node = await start_matching(own_nats, data, own_nc, QT_MATCHING_SNAPSHOT_EVERY="1000")
    processes.append(node)
    orders = burst()
    acked: dict[str, dict] = {}
    stop = asyncio.Event()
    sender = asyncio.create_task(_send(own_nc, orders, acked, stop))
    while len(acked) < KILL_AFTER and not sender.done():
        await asyncio.sleep(0.01)
    node.kill9()
    stop.set()
    await sender
    before_restart = dict(acked)

    processes.append(await start_matching(own_nats, data, own_nc, QT_MATCHING_SNAPSHOT_EVERY="1000"))
    await _send(own_nc, [o for o in orders if o["order_id"] not in acked], acked, None)

    assert len(acked) == TOTAL
    expected, journaled = await replay_journal(own_nc, "BTC-USD")
    assert journaled == Counter({o["order_id"]: 1 for o in orders}), "an order was journaled twice or lost"
    journal = await read_stream(own_nc, "orders.BTC-USD")
    assert len(journal) < TOTAL, "64 orders in flight were not batched: the kill did not land mid-batch"
    book = await matching(own_nc, "book", instrument="BTC-USD", depth=500)
    assert (book["checksum"], book["seq"]) == (expected.book.checksum(), expected.applied_seq)
    for order_id, first_reply in list(before_restart.items())[::250]:
        now = await call(own_nc, ORDER, {"instrument": "BTC-USD", "order_id": order_id})
        assert now["journal_seq"] >= first_reply["journal_seq"]
        assert now["filled"] >= first_reply["filled"]
    reports, stale = await exec_reports(own_nc, "BTC-USD")
    assert stale == 0
    firsts = Counter(r["order_id"] for r in reports if r["kind"] in ("accepted", "rejected"))
    assert firsts == Counter({o["order_id"]: 1 for o in orders}), "an order was reported twice or never"
