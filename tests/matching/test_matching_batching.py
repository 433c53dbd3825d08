"""Smart batching of the journal: concurrent commands share one ORDERS message (one fsync), each is
applied exactly once in journal order, answered on its own, and a restart replays batches to the same book."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import msgpack
import nats
import pytest
from nats.aio.client import Client

from contracts.credentials import nkey_seed_path
from contracts.errors import ErrorCode, QtError
from contracts.subjects import matching_subject
from mesh.rpc import call
from nodes.matching.engine import BATCH, command_key
from tests.matching.journal_replay import read_stream, replay_journal
from tests.matching.node_client import start_matching
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer

SUBMIT = matching_subject("BTC-USD", "submit")
BOOK = matching_subject("BTC-USD", "book")
ORDER = matching_subject("BTC-USD", "order")

MID = 6_750_000
CLIENTS = 4
#: No snapshot, so a restart replays the whole journal of batch entries.
ENV = {"QT_MATCHING_SNAPSHOT_EVERY": "1000000"}


def orders(n: int, seed: int = 3) -> list[dict[str, Any]]:
    """BTC-USD limits around the mid, a fifth of them crossing: fills inside and across batches."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        side = rng.choice(("BUY", "SELL"))
        through = -1 if rng.random() < 0.2 else 1
        price = MID + through * rng.randint(0, 20) * (1 if side == "SELL" else -1)
        out.append({"order_id": f"k{i}", "account": f"acct{rng.randint(0, 5)}", "instrument": "BTC-USD",
                    "side": side, "price": price, "qty": rng.randint(1, 30) * 1000})
    return out


async def clients(server: NatsServer, n: int) -> list[Client]:
    return [await nats.connect(server.url, nkeys_seed=str(nkey_seed_path(server.data_dir, "ops")))
            for _ in range(n)]


async def journal_commands(nc: Client, symbol: str) -> list[tuple[int, list[dict[str, Any]]]]:
    """(stream sequence, commands) of every ORDERS message of `symbol`."""
    out = []
    for msg in await read_stream(nc, f"orders.{symbol}"):
        entry = msgpack.unpackb(msg.data)
        out.append((msg.metadata.sequence.stream, entry["commands"] if entry["op"] == BATCH else [entry]))
    return out


async def test_concurrent_submits_share_journal_messages_and_each_is_applied_once_in_journal_order(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc, **ENV))
    burst = orders(400)
    repeats = burst[::40]  # the same command sent twice at once: journaled once, both get its result
    conns = await clients(own_nats, CLIENTS)
    try:
        sends = [call(conns[i % CLIENTS], SUBMIT, body, timeout=20)
                 for i, body in enumerate(burst + repeats)]
        replies = await asyncio.gather(*sends)
    finally:
        for conn in conns:
            await conn.close()

    journal = await journal_commands(own_nc, "BTC-USD")
    assert len(journal) < len(burst), "concurrent submits were not batched"
    expected, journaled = await replay_journal(own_nc, "BTC-USD")
    assert journaled == Counter(o["order_id"] for o in burst), "an order was journaled twice or lost"
    seq_of = {c["order_id"]: seq for seq, commands in journal for c in commands}
    for body, reply in zip(burst + repeats, replies, strict=True):
        # each reply is the deterministic replay's result of that command, at the message that holds it
        assert reply == expected.results[command_key({"op": "new", **body})]
        assert reply["journal_seq"] == seq_of[body["order_id"]]
    book = await call(own_nc, BOOK, {"instrument": "BTC-USD", "depth": 500})
    assert (book["checksum"], book["seq"]) == (expected.book.checksum(), expected.applied_seq)


async def test_a_batch_with_one_rejected_order_rejects_only_that_one(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc))
    ask = {"order_id": "ask", "account": "maker", "instrument": "BTC-USD", "side": "SELL", "price": MID,
           "qty": 5000}
    await call(own_nc, SUBMIT, ask)
    bids = [{"order_id": f"bid{i}", "account": f"acct{i}", "instrument": "BTC-USD", "side": "BUY",
             "price": MID - 100 - i, "qty": 1000} for i in range(30)]
    taker = {"order_id": "po", "account": "taker", "instrument": "BTC-USD", "side": "BUY", "price": MID,
             "qty": 1000, "post_only": True}  # would take the ask: the engine refuses it

    replies = await asyncio.gather(*(call(own_nc, SUBMIT, b) for b in [*bids[:15], taker, *bids[15:]]),
                                   return_exceptions=True)

    refused = replies[15]
    assert isinstance(refused, QtError) and refused.code is ErrorCode.POST_ONLY_WOULD_TAKE
    assert all(isinstance(r, dict) and r["status"] == "new" for r in replies[:15] + replies[16:])
    holding = next(commands for _seq, commands in await journal_commands(own_nc, "BTC-USD")
                   if any(c["order_id"] == "po" for c in commands))
    assert len(holding) > 1, "the refused order was journaled alone: this did not test a batch"
    book = await call(own_nc, BOOK, {"instrument": "BTC-USD", "depth": 50})
    assert book["asks"] == [[MID, 5000]]  # the refused taker changed nothing
    assert sorted(p for p, _q in book["bids"]) == sorted(b["price"] for b in bids)


@pytest.mark.slow
async def test_a_restart_replays_batch_entries_to_the_live_book(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    data = tmp_path / "matching"
    node = await start_matching(own_nats, data, own_nc, **ENV)
    processes.append(node)
    burst = orders(600, seed=5)
    await asyncio.gather(*(call(own_nc, SUBMIT, body, timeout=20) for body in burst))
    assert len(await journal_commands(own_nc, "BTC-USD")) < len(burst)
    live = await call(own_nc, BOOK, {"instrument": "BTC-USD", "depth": 500})
    probes = [o["order_id"] for o in burst[::50]]
    live_orders = [await call(own_nc, ORDER, {"instrument": "BTC-USD", "order_id": p}) for p in probes]
    node.kill9()  # no snapshot on the way out: the restart replays every batch entry

    processes.append(await start_matching(own_nats, data, own_nc, **ENV))

    assert await call(own_nc, BOOK, {"instrument": "BTC-USD", "depth": 500}) == live
    assert [await call(own_nc, ORDER, {"instrument": "BTC-USD", "order_id": p})
            for p in probes] == live_orders
