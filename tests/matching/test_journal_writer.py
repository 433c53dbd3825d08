"""The journal writer against a real ORDERS stream: a few appends in flight under load, each command
journaled once in a message that holds it, a lone command alone, a repeat joined, a failure retryable."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import msgpack
import pytest
from nats.aio.client import Client

from contracts.errors import ErrorCode, QtError
from contracts.subjects import ORDERS_STREAM, orders_subject
from mesh.jetstream import ensure_named
from nodes.matching.engine import BATCH
from nodes.matching.journal import APPENDS_IN_FLIGHT, MAX_BATCH, JournalWriter, Queued
from tests.matching.journal_replay import read_stream

SUBJECT = orders_subject("BTC-USD")


class CountingWriter(JournalWriter):
    """The real writer, counting how many of its appends are in flight at once."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.writing = 0
        self.most_writing = 0

    async def _write(self, batch: list[Queued]) -> list[int]:
        self.writing += 1
        self.most_writing = max(self.most_writing, self.writing)
        try:
            return await super()._write(batch)
        finally:
            self.writing -= 1


def entry(n: int) -> dict[str, Any]:
    return {"op": "new", "order_id": f"j{n}"}


async def journal(nc: Client) -> list[tuple[int, list[dict[str, Any]], str]]:
    """(sequence, commands, msg-id) of every journal message, in stream order."""
    out = []
    for msg in await read_stream(nc, SUBJECT):
        body = msgpack.unpackb(msg.data)
        commands = body["commands"] if body["op"] == BATCH else [body]
        out.append((msg.metadata.sequence.stream, commands, (msg.headers or {})["Nats-Msg-Id"]))
    return out


@pytest.fixture
async def writer(own_nc: Client) -> CountingWriter:
    js = own_nc.jetstream()
    await ensure_named(js, streams=(ORDERS_STREAM,), buckets=())
    return CountingWriter(js, SUBJECT)


async def test_a_burst_keeps_several_appends_in_flight_and_journals_each_command_once_where_its_answer_says(
    own_nc: Client, writer: CountingWriter
) -> None:
    # queued in one loop turn: more than the appends in flight can carry, so the rest waits for a slot
    burst = APPENDS_IN_FLIGHT * MAX_BATCH + 100
    seqs = await asyncio.gather(*(writer.append(f"new:j{n}", entry(n)) for n in range(burst)))

    assert writer.most_writing == APPENDS_IN_FLIGHT > 1
    stored = await journal(own_nc)
    assert len(stored) == APPENDS_IN_FLIGHT + 1
    assert Counter(c["order_id"] for _seq, commands, _id in stored for c in commands) == Counter(
        f"j{n}" for n in range(burst))
    holding = {c["order_id"]: seq for seq, commands, _id in stored for c in commands}
    assert [holding[f"j{n}"] for n in range(burst)] == seqs


async def test_a_lone_command_is_journaled_alone_under_its_own_key(own_nc: Client, writer: CountingWriter) -> None:
    seq = await writer.append("new:solo", {"op": "new", "order_id": "solo"})

    assert await journal(own_nc) == [(seq, [{"op": "new", "order_id": "solo"}], "new:solo")]


async def test_a_repeat_sent_while_its_key_is_queued_joins_it(own_nc: Client, writer: CountingWriter) -> None:
    seq_first, seq_again = await asyncio.gather(writer.append("new:twice", entry(9)),
                                                writer.append("new:twice", entry(9)))

    assert seq_first == seq_again
    assert await journal(own_nc) == [(seq_first, [entry(9)], "new:twice")]
    assert await writer.append("new:twice", entry(9)) == seq_first  # sent again later: the window dedups it
    assert len(await journal(own_nc)) == 1


async def test_a_failed_append_fails_its_commands_as_unavailable_and_the_same_key_can_be_sent_again(
    own_nc: Client,
) -> None:
    js = own_nc.jetstream()
    nowhere = JournalWriter(js, "nostream.BTC-USD", timeout_s=1.0)  # no stream listens: the append fails
    with pytest.raises(QtError) as failed:
        await nowhere.append("new:lost", entry(1))
    assert failed.value.code is ErrorCode.UNAVAILABLE

    await ensure_named(js, streams=(ORDERS_STREAM,), buckets=())
    retried = JournalWriter(js, SUBJECT)
    nowhere.subject = SUBJECT  # the same writer, its failed key forgotten: a retry journals it
    seq = await nowhere.append("new:lost", entry(1))

    assert await journal(own_nc) == [(seq, [entry(1)], "new:lost")]
    assert await retried.append("new:lost", entry(1)) == seq  # the duplicate window answers the stored one
