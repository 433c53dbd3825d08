"""Read a test server's journal and execution streams back, to compare against the engine."""

from __future__ import annotations

from collections import Counter
from typing import Any

import msgpack
from nats.aio.client import Client
from nats.js.api import ConsumerConfig, DeliverPolicy

from contracts.fencing import FenceGate
from contracts.instruments import INSTRUMENTS
from contracts.matching import exec_reports as decode_reports
from contracts.subjects import exec_subject, matching_subject
from mesh.rpc import call
from nodes.matching.engine import BATCH, InstrumentEngine
from tests.polling import eventually


async def read_stream(nc: Client, subject: str) -> list[Any]:
    """Every message on `subject`, in stream order (bounded by the stream's size at call time)."""
    js = nc.jetstream()
    stream = await js.find_stream_name_by_subject(subject)
    info = await js.stream_info(stream, subjects_filter=subject)
    total = sum((info.state.subjects or {}).values())
    out: list[Any] = []
    if not total:
        return out
    sub = await js.subscribe(subject, ordered_consumer=True, config=ConsumerConfig(deliver_policy=DeliverPolicy.ALL))
    try:
        while len(out) < total:
            out.append(await sub.next_msg(timeout=10))
    finally:
        await sub.unsubscribe()
    return out


async def replay_journal(nc: Client, symbol: str) -> tuple[InstrumentEngine, Counter[str]]:
    """An uninterrupted engine run over the whole journal, and how often each order id was journaled
    (counting every command of a batch entry)."""
    engine = InstrumentEngine(INSTRUMENTS[symbol])
    news: Counter[str] = Counter()
    for msg in await read_stream(nc, f"orders.{symbol}"):
        entry = msgpack.unpackb(msg.data)
        for command in entry["commands"] if entry["op"] == BATCH else [entry]:
            if command["op"] == "new":
                news[command["order_id"]] += 1
        engine.apply_entry(msg.metadata.sequence.stream, entry)
    return engine, news


async def exec_reports(nc: Client, symbol: str) -> tuple[list[dict[str, Any]], int]:
    """EXEC reports that pass the fence, and how many stale messages it dropped (once the engine has
    published everything it applied: reports go out after the reply, in batches)."""
    async def status() -> dict[str, Any]:
        return dict((await call(nc, matching_subject(symbol, "status"), {"instrument": symbol}))["instruments"][0])

    await eventually(status, lambda s: s["exec_published_seq"] >= s["applied_seq"],
                     what=f"{symbol}'s EXEC reports all published")
    gate = FenceGate()
    kept, dropped = [], 0
    for msg in await read_stream(nc, exec_subject(symbol)):
        if gate.admit(symbol, msg.headers):
            kept.extend(decode_reports(msg.data))
        else:
            dropped += 1
    return kept, dropped
