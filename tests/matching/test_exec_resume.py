"""An engine that died part way through publishing one journal entry's EXEC messages publishes the rest
of that entry when it restarts (msg-ids drop the ones the stream already holds)."""

from __future__ import annotations

from typing import Any

import msgpack
from nats.aio.client import Client

from contracts.codec import Wire
from contracts.matching import SubmitOrder, exec_reports
from contracts.subjects import (
    EXEC_REPORTS_MAX,
    EXEC_STREAM,
    ORDERS_STREAM,
    exec_msg_id,
    exec_subject,
    matching_subject,
    orders_subject,
)
from mesh.jetstream import ensure_named
from mesh.rpc import call
from nodes.matching.engine import NEW, command_key
from nodes.matching.journal import journal_message
from tests.matching.journal_replay import read_stream
from tests.matching.node_client import order, start_matching
from tests.polling import eventually
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer


def new_entry(body: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """A journal command as the node writes it for `matching.submit`."""
    entry = {"op": NEW, **vars(SubmitOrder.model_validate(body, context={"wire": Wire.JSON}))}
    return command_key(entry), entry


async def _entry_of(js: Any, orders: int) -> int:
    """Journal one entry of `orders` resting buys (one `accepted` report each): its stream sequence."""
    payload, msg_id = journal_message([new_entry(order(f"r{i}", f"acct{i}", "BUY", "100.00", "1.00"))
                                       for i in range(orders)])
    return int((await js.publish(orders_subject("AAPL"), payload, headers={"Nats-Msg-Id": msg_id})).seq)


async def _published_ids(own_nc: Client, entry_seq: int) -> list[str]:
    async def status() -> dict[str, Any]:
        return dict((await call(own_nc, matching_subject("AAPL", "status"), {"instrument": "AAPL"}))["instruments"][0])

    await eventually(status, lambda s: s["exec_published_seq"] >= s["applied_seq"] >= entry_seq,
                     what="the replayed entry's reports published")
    return [(m.headers or {}).get("Nats-Msg-Id", "") for m in await read_stream(own_nc, "exec.AAPL.>")]


async def test_reports_cut_short_by_a_crash_are_published_on_restart(
    own_nats: NatsServer, own_nc: Client, tmp_path: Any, processes: list[NodeProcess]
) -> None:
    js = own_nc.jetstream()
    await ensure_named(js, streams=(ORDERS_STREAM, EXEC_STREAM), buckets=())
    # an entry whose reports take two EXEC messages, and only the first in the stream: the engine died mid-publish
    entry_seq = await _entry_of(js, EXEC_REPORTS_MAX + 44)
    await js.publish(exec_subject("AAPL"), msgpack.packb([{"partial": True}]),
                     headers={"Nats-Msg-Id": exec_msg_id("AAPL", entry_seq, 0)})

    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc))

    ids = await _published_ids(own_nc, entry_seq)
    assert ids == [exec_msg_id("AAPL", entry_seq, 0), exec_msg_id("AAPL", entry_seq, 1)], \
        "the rest of the entry's reports were never published, or some twice"
    last = (await read_stream(own_nc, exec_subject("AAPL")))[-1]
    rest = [r["order_id"] for r in exec_reports(last.data)]
    assert rest == [f"r{i}" for i in range(EXEC_REPORTS_MAX, EXEC_REPORTS_MAX + 44)]


async def test_an_entry_cut_short_under_the_one_message_per_report_layout_is_published_whole(
    own_nats: NatsServer, own_nc: Client, tmp_path: Any, processes: list[NodeProcess]
) -> None:
    js = own_nc.jetstream()
    await ensure_named(js, streams=(ORDERS_STREAM, EXEC_STREAM), buckets=())
    # what an engine of the older layout left: the entry's first report on its own, kind in the subject
    entry_seq = await _entry_of(js, 2)
    await js.publish("exec.AAPL.accepted", msgpack.packb({"kind": "accepted", "order_id": "r0"}),
                     headers={"Nats-Msg-Id": f"AAPL:{entry_seq}:0"})

    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc))

    ids = await _published_ids(own_nc, entry_seq)
    assert ids == [f"AAPL:{entry_seq}:0", exec_msg_id("AAPL", entry_seq, 0)], \
        "the entry was not published again whole (its msg-id taken for the older report's)"
    last = (await read_stream(own_nc, exec_subject("AAPL")))[-1]
    assert [r["order_id"] for r in exec_reports(last.data)] == ["r0", "r1"]
