"""A hot standby takes over when the owner stops answering; a paused old owner is fenced out."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import Counter
from itertools import accumulate
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.aio.msg import Msg

from contracts.errors import ErrorCode, QtError
from contracts.instruments import INSTRUMENTS
from contracts.subjects import FENCE_HEADER, exec_subject, matching_subject
from mesh.rpc import call
from tests.conftest import wait_for_service
from tests.matching.journal_replay import exec_reports, read_stream, replay_journal
from tests.matching.node_client import matching, start_matching
from tests.polling import eventually
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer

MID = 345_000
TICK = INSTRUMENTS["ETH-USD"].tick


def _order(i: int) -> dict:
    side = "BUY" if i % 2 else "SELL"
    return {"order_id": f"e{i}", "account": f"acct{i % 5}", "instrument": "ETH-USD", "side": side,
            "price": MID + TICK * ((i % 7) * (-1 if side == "BUY" else 1) + (3 if i % 11 == 0 else 0)),
            "qty": 10_000 * (1 + i % 4)}


async def _submit_until_done(nc: Client, body: dict) -> dict:
    """A client that retries the same order id until some engine answers (bounded)."""
    async def submit() -> dict[str, Any] | None:
        try:
            return await call(nc, matching_subject("ETH-USD", "submit"), body, timeout=2)
        except QtError as exc:  # only "no engine right now" is worth retrying
            if exc.code not in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT):
                raise
            return None

    answered = await eventually(submit, lambda reply: reply is not None, every_s=0.1, timeout_s=60,
                                what=f"{body['order_id']} answered")
    assert answered is not None
    return answered


@pytest.mark.slow
@pytest.mark.parametrize("failure", ["paused", "killed"])
async def test_standby_takes_over_and_the_old_owner_is_fenced(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess], failure: str
) -> None:
    owner = await start_matching(own_nats, tmp_path / "owner", own_nc)
    processes.append(owner)
    standby = NodeProcess("nodes.matching", own_nats.url, tmp_path / "standby", own_nats.data_dir).start()
    processes.append(standby)
    for i in range(200):
        await _submit_until_done(own_nc, _order(i))
    old_token = (await matching(own_nc, "status", instrument="ETH-USD"))["instruments"][0]["lease_token"]
    # every EXEC publish on the wire, duplicates included: (lease token, msg-id, body)
    published: list[tuple[int, str, bytes]] = []

    async def on_exec(msg: Msg) -> None:
        headers = msg.headers or {}
        published.append((int(headers.get(FENCE_HEADER, "0")), headers.get("Nats-Msg-Id", ""), msg.data))

    wire = await own_nc.subscribe(exec_subject("ETH-USD"), cb=on_exec)

    # mid-burst (some orders answered, the rest journaled, applied or in flight, reports pending), the
    # owner hangs or dies; paused, its lease lapses, the standby takes over, then the owner wakes up
    burst = [asyncio.create_task(_submit_until_done(own_nc, _order(i))) for i in range(200, 400)]
    async with asyncio.timeout(60):
        while sum(task.done() for task in burst) < 20:
            await asyncio.sleep(0.005)
    os.kill(owner.pid, signal.SIGSTOP if failure == "paused" else signal.SIGKILL)
    try:
        load = asyncio.gather(*burst, *(_submit_until_done(own_nc, _order(i)) for i in range(400, 600)))
        await asyncio.wait_for(load, timeout=90)
    finally:
        if failure == "paused":
            os.kill(owner.pid, signal.SIGCONT)

    assert await asyncio.to_thread(owner.proc.wait, 30) != 0, "the fenced-out owner must stop"
    await own_nc.flush()
    await wire.unsubscribe()
    status = (await matching(own_nc, "status", instrument="ETH-USD"))["instruments"][0]
    assert status["lease_token"] > old_token

    expected, journaled = await replay_journal(own_nc, "ETH-USD")
    assert journaled == Counter({f"e{i}": 1 for i in range(600)})
    book = await matching(own_nc, "book", instrument="ETH-USD", depth=100)
    assert (book["checksum"], book["seq"]) == (expected.book.checksum(), expected.applied_seq)
    reports, stale = await exec_reports(own_nc, "ETH-USD")
    assert stale == 0, f"EXEC holds {stale} reports of the fenced-out owner after the new owner's first"
    # A pause between the owner's last lease check and nats.py's flusher writing the batch lets that batch
    # reach the wire under the old token after the new owner's first report (docs/DESIGN.md, "Leases and
    # fencing"): what the old owner may put there late is only copies of reports the stream holds, same
    # msg-id and same body (the reports are a function of the journal), which a msg-id dedupe drops.
    tokens = [token for token, _, _ in published]
    late = [(msg_id, body) for (token, msg_id, body), newest in zip(published, accumulate(tokens, max), strict=True)
            if token < newest]
    stored = {(msg.headers or {}).get("Nats-Msg-Id", ""): msg.data
              for msg in await read_stream(own_nc, exec_subject("ETH-USD"))}
    diverged = [msg_id for msg_id, body in late if stored.get(msg_id) != body]
    assert diverged == [], f"the old owner published {len(diverged)} late EXEC reports the stream does not hold"
    firsts = Counter(r["order_id"] for r in reports if r["kind"] in ("accepted", "rejected"))
    assert firsts == Counter({f"e{i}": 1 for i in range(600)})
    await wait_for_service(own_nc, "matching")
