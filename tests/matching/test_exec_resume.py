"""An engine that died part way through publishing one journal entry's EXEC reports publishes the rest
of that entry when it restarts (msg-ids drop the ones the stream already holds)."""

from __future__ import annotations

from typing import Any

import msgpack
from nats.aio.client import Client

from contracts.codec import Wire
from contracts.matching import SubmitOrder
from contracts.subjects import EXEC_STREAM, ORDERS_STREAM, exec_msg_id, exec_subject, matching_subject, orders_subject
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


async def test_reports_cut_short_by_a_crash_are_published_on_restart(
    own_nats: NatsServer, own_nc: Client, tmp_path: Any, processes: list[NodeProcess]
) -> None:
    js = own_nc.jetstream()
    await ensure_named(js, streams=(ORDERS_STREAM, EXEC_STREAM), buckets=())
    # one journal entry of two orders, and only the first of its reports in EXEC: the engine died mid-publish
    payload, msg_id = journal_message([new_entry(order("r1", "alice", "BUY", "100.00", "1.00")),
                                       new_entry(order("r2", "bob", "BUY", "99.00", "1.00"))])
    entry_seq = (await js.publish(orders_subject("AAPL"), payload, headers={"Nats-Msg-Id": msg_id})).seq
    await js.publish(exec_subject("AAPL", "accepted"), msgpack.packb({"partial": True}),
                     headers={"Nats-Msg-Id": exec_msg_id("AAPL", entry_seq, 0)})

    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc))

    async def status() -> dict[str, Any]:
        return dict((await call(own_nc, matching_subject("AAPL", "status"), {"instrument": "AAPL"}))["instruments"][0])

    await eventually(status, lambda s: s["exec_published_seq"] >= s["applied_seq"] >= entry_seq,
                     what="the replayed entry's reports published")
    ids = [(m.headers or {}).get("Nats-Msg-Id") for m in await read_stream(own_nc, exec_subject("AAPL"))]
    assert ids[0] == exec_msg_id("AAPL", entry_seq, 0)
    assert exec_msg_id("AAPL", entry_seq, 1) in ids, "the rest of the entry's reports were never published"
    assert len(ids) == len(set(ids)), "a report was published twice"
