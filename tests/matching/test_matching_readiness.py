"""A restarted engine answers nothing (no responder, or `unavailable`) until it has replayed its whole
journal: PING, `book` and `order` never show a partial book or `unknown_order` for a filled order."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts.errors import ErrorCode, QtError
from contracts.subjects import matching_subject
from mesh.rpc import call
from tests.matching.node_client import start_matching
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer

SUBMIT = matching_subject("BTC-USD", "submit")
BOOK = matching_subject("BTC-USD", "book")
ORDER = matching_subject("BTC-USD", "order")

ORDERS = 4_000
IN_FLIGHT = 64
MID = 6_750_000
#: No snapshot during the run, so a restart replays the whole journal.
ENV = {"QT_MATCHING_SNAPSHOT_EVERY": "1000000"}
#: Complete answers of each kind to see after the restart before the test is satisfied.
COMPLETE_ANSWERS = 5


def journal(seed: int = 11) -> list[dict[str, Any]]:
    """Crossing GTC orders: many fill completely (gone from the book), the rest rest."""
    rng = random.Random(seed)
    return [{"order_id": f"r{i}", "account": f"acct{rng.randint(0, 9)}", "instrument": "BTC-USD",
             "side": (side := rng.choice(("BUY", "SELL"))),
             "price": MID + rng.randint(-20, 20) * (1 if side == "SELL" else -1), "qty": rng.randint(1, 50) * 1000}
            for i in range(ORDERS)]


async def submit_all(nc: Client, orders: list[dict[str, Any]]) -> None:
    queue = list(reversed(orders))

    async def worker() -> None:
        while queue:
            await call(nc, SUBMIT, queue.pop(), timeout=10)

    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))


async def ask(nc: Client, subject: str, body: dict[str, Any]) -> dict[str, Any] | None:
    """The answer, or None when the engine is not serving yet (no responder, timeout, `unavailable`)."""
    try:
        return await call(nc, subject, body, timeout=1)
    except QtError as error:
        if error.code in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT):
            return None
        return {"error": str(error.code)}  # e.g. `unknown_order` for an order filled before the kill


async def pinged(nc: Client) -> bool:
    try:
        await nc.request("$SRV.PING.matching", b"", timeout=1)
    except (NoRespondersError, NatsTimeoutError):
        return False
    return True


@pytest.mark.slow
async def test_restarted_engine_answers_only_its_complete_state(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    data = tmp_path / "matching"
    node = await start_matching(own_nats, data, own_nc, **ENV)
    processes.append(node)
    await submit_all(own_nc, journal())
    book_query = {"instrument": "BTC-USD", "depth": 500}
    before = await call(own_nc, BOOK, book_query)
    probes = [f"r{i}" for i in range(0, ORDERS, ORDERS // 40)]
    orders_before = {oid: await call(own_nc, ORDER, {"instrument": "BTC-USD", "order_id": oid})
                     for oid in probes}
    assert sum(o["remaining"] == 0 for o in orders_before.values()) >= 5, "the probes must include filled orders"
    node.kill9()

    processes.append(NodeProcess("nodes.matching", own_nats.url, data, own_nats.data_dir, extra_env=ENV).start())
    complete = {"book": 0, "order": 0, "ping": 0}
    partial: list[str] = []
    deadline = asyncio.get_running_loop().time() + 60
    n = 0
    while min(complete.values()) < COMPLETE_ANSWERS:
        assert asyncio.get_running_loop().time() < deadline, f"never served completely: {complete}"
        oid = probes[n % len(probes)]
        n += 1
        ping_ok = await pinged(own_nc)
        book, order = await asyncio.gather(
            ask(own_nc, BOOK, book_query),
            ask(own_nc, ORDER, {"instrument": "BTC-USD", "order_id": oid}))
        if book is not None:
            complete["book"] += 1
            if book != before:
                partial.append(f"book at seq {book['seq']} (before the kill {before['seq']})")
        if order is not None:
            complete["order"] += 1
            if order != orders_before[oid]:
                partial.append(f"order {oid}: {order} (before the kill {orders_before[oid]})")
        if ping_ok:
            complete["ping"] += 1
            if book is None or order is None:
                partial.append("PING answered while book/order were not served")
    assert not partial, partial[:5]
