"""Durable consumers: a failing message is retried MAX_DELIVER times, parked in DLQ once, and replayed."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client
from nats.js.api import RawStreamMsg, StreamConfig
from nats.js.errors import NotFoundError

from contracts.dlq import DlqReplayReply
from contracts.errors import ErrorCode, QtError
from contracts.subjects import (
    DLQ_CONSUMER,
    DLQ_DELIVERIES,
    DLQ_LAST_ERROR,
    DLQ_ORIGIN_SEQ,
    DLQ_ORIGIN_STREAM,
    DLQ_ORIGIN_SUBJECT,
    DLQ_SERVICE,
    DLQ_STREAM,
    MAX_DELIVER,
    dlq_subject,
)
from mesh.jetstream import ensure_named
from nodes.runtime.durable import DeliveredMessage, DurableWorker, max_deliveries_advisory
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.service import NodeService
from tests.polling import eventually
from tooling.natsserver import NatsServer

QT = str(Path(sys.executable).parent / "qt")
PAYLOAD = b'{"order_id": "o-1", "qty": "1.00"}'
PARK_TIMEOUT_S = 30.0


class Handler:
    """Records every message it is given; raises while `failing` is set."""

    def __init__(self, *, failing: bool) -> None:
        self.failing = failing
        self.calls: list[DeliveredMessage] = []
        self.called = asyncio.Event()

    async def __call__(self, msg: DeliveredMessage) -> None:
        self.calls.append(msg)
        self.called.set()
        if self.failing:
            raise RuntimeError(f"boom on delivery {msg.deliveries}")


@dataclass(frozen=True)
class Lane:
    """A test-only stream with one durable consumer on it."""

    stream: str
    subject: str
    consumer: str
    service: str

    @property
    def dlq(self) -> str:
        """Where this consumer's dead letters are parked."""
        return dlq_subject(self.stream, self.consumer)


@pytest.fixture
async def lane(nc: Client) -> AsyncIterator[Lane]:
    token = uuid.uuid4().hex[:10]
    lane = Lane(f"TDLQ{token}", f"tdlq{token}.orders", f"worker-{token}", f"dlqtest{token}")
    js = nc.jetstream()
    await ensure_named(js, streams=(DLQ_STREAM,), buckets=())
    await js.add_stream(StreamConfig(name=lane.stream, subjects=[f"tdlq{token}.>"]))
    try:
        yield lane
    finally:
        await js.delete_stream(lane.stream)
        await js.purge_stream(DLQ_STREAM, subject=lane.dlq)


@pytest.fixture
async def workers(lane: Lane) -> AsyncIterator[list[DurableWorker]]:
    """Workers a test starts; stopped before the lane's stream is deleted."""
    started: list[DurableWorker] = []
    try:
        yield started
    finally:
        for worker in started:
            await worker.stop()


async def start_worker(nc: Client, lane: Lane, handler: Handler, workers: list[DurableWorker]) -> DurableWorker:
    worker = DurableWorker(nc.jetstream(), nc, stream=lane.stream, consumer=lane.consumer,
                           filter_subjects=[lane.subject], service=lane.service, handler=handler)
    await worker.start()
    workers.append(worker)
    return worker


async def publish_and_wait_parked(nc: Client, lane: Lane) -> RawStreamMsg:
    """Publish one message on the lane and return its DLQ copy once a worker has parked it."""
    js = nc.jetstream()
    await js.publish(lane.subject, PAYLOAD, headers={"Nats-Msg-Id": "order-o-1", "traceparent": "00-ab-cd-01"})
    # Polled in the stream, not watched on the subject: the server can route a published message
    # to core subscribers before the stream has stored it (a CI run read "no message found").
    return await eventually(lambda: js.get_msg(DLQ_STREAM, subject=lane.dlq), ignoring=(NotFoundError,),
                            timeout_s=PARK_TIMEOUT_S, what="the message parked in DLQ")


async def qt(nats_server: NatsServer, *args: str) -> tuple[int, str, str]:
    """Run `qt` against the test server without blocking the loop the service answers from."""
    proc = await asyncio.create_subprocess_exec(
        QT, "--nats-url", nats_server.url, "--data-dir", str(nats_server.data_dir), *args,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        env=dict(os.environ, COLUMNS="300"),  # wide enough that no column of the table is cut short
    )
    try:
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise
    return proc.returncode or 0, stdout.decode(), stderr.decode()


async def test_a_message_that_always_fails_is_delivered_max_deliver_times_then_parked(
    nc: Client, lane: Lane, workers: list[DurableWorker]
) -> None:
    handler = Handler(failing=True)
    await start_worker(nc, lane, handler, workers)

    parked = await publish_and_wait_parked(nc, lane)

    assert [call.deliveries for call in handler.calls] == list(range(1, MAX_DELIVER + 1))
    assert {call.data for call in handler.calls} == {PAYLOAD}
    assert parked.data == PAYLOAD
    headers = parked.headers or {}
    assert headers[DLQ_ORIGIN_STREAM] == lane.stream
    assert headers[DLQ_ORIGIN_SUBJECT] == lane.subject
    assert headers[DLQ_ORIGIN_SEQ] == "1"
    assert headers[DLQ_CONSUMER] == lane.consumer
    assert headers[DLQ_SERVICE] == lane.service
    assert headers[DLQ_LAST_ERROR] == f"RuntimeError: boom on delivery {MAX_DELIVER}"
    assert headers[DLQ_DELIVERIES] == str(MAX_DELIVER)
    assert headers["traceparent"] == "00-ab-cd-01"
    assert headers["Nats-Msg-Id"] == f"{lane.stream}:{lane.consumer}:1"


async def test_a_fixed_handler_replays_the_parked_message_once_and_it_leaves_dlq(
    nc: Client, lane: Lane, workers: list[DurableWorker]
) -> None:
    handler = Handler(failing=True)
    worker = await start_worker(nc, lane, handler, workers)
    parked = await publish_and_wait_parked(nc, lane)
    assert parked.seq is not None
    handler.failing = False

    reply = await worker.redeliver(parked.seq)

    assert reply == DlqReplayReply(seq=parked.seq, origin_stream=lane.stream, origin_seq=1, outcome="replayed")
    assert len(handler.calls) == MAX_DELIVER + 1
    replayed = handler.calls[-1]
    assert (replayed.subject, replayed.data, replayed.stream_seq) == (lane.subject, PAYLOAD, 1)
    assert replayed.headers == {"traceparent": "00-ab-cd-01"}
    with pytest.raises(NotFoundError):
        await nc.jetstream().get_msg(DLQ_STREAM, parked.seq)
    with pytest.raises(QtError) as again:
        await worker.redeliver(parked.seq)
    assert again.value.code is ErrorCode.NOT_FOUND


async def test_a_replay_that_fails_again_leaves_the_message_parked(
    nc: Client, lane: Lane, workers: list[DurableWorker]
) -> None:
    handler = Handler(failing=True)
    worker = await start_worker(nc, lane, handler, workers)
    parked = await publish_and_wait_parked(nc, lane)
    assert parked.seq is not None

    with pytest.raises(QtError) as failed:
        await worker.redeliver(parked.seq)

    assert failed.value.code is ErrorCode.UNAVAILABLE
    assert "boom on delivery 6" in failed.value.message
    still = await nc.jetstream().get_msg(DLQ_STREAM, parked.seq)
    assert still.data == PAYLOAD


async def test_a_worker_refuses_to_replay_another_consumers_dead_letter(nc: Client, lane: Lane) -> None:
    js = nc.jetstream()
    other = dlq_subject(lane.stream, "someone-else")
    ack = await js.publish(other, PAYLOAD, headers={DLQ_ORIGIN_STREAM: lane.stream, DLQ_CONSUMER: "someone-else"})
    worker = DurableWorker(js, nc, stream=lane.stream, consumer=lane.consumer, filter_subjects=[lane.subject],
                           service=lane.service, handler=Handler(failing=False))
    try:
        with pytest.raises(QtError) as refused:
            await worker.redeliver(ack.seq)
    finally:
        await js.purge_stream(DLQ_STREAM, subject=other)

    assert refused.value.code is ErrorCode.VALIDATION
    assert f"{lane.stream}/someone-else" in refused.value.message


async def test_a_handled_message_is_acked_and_never_parked(
    nc: Client, lane: Lane, workers: list[DurableWorker]
) -> None:
    handler = Handler(failing=False)
    await start_worker(nc, lane, handler, workers)
    js = nc.jetstream()

    await js.publish(lane.subject, PAYLOAD)
    await asyncio.wait_for(handler.called.wait(), timeout=10)

    async def ack_floor() -> int:  # the ack is a fire-and-forget publish: poll its effect
        return (await js.consumer_info(lane.stream, lane.consumer)).ack_floor.stream_seq

    await eventually(ack_floor, lambda seq: seq == 1, what="the message acked")
    assert [call.deliveries for call in handler.calls] == [1]
    with pytest.raises(NotFoundError):
        await js.get_msg(DLQ_STREAM, subject=lane.dlq)


def parked_logs(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    """The fields of every "parked in DLQ" line logged so far, oldest first."""
    return [record.kv for record in caplog.records if record.getMessage() == "parked in DLQ"]


async def test_two_workers_on_one_consumer_park_a_message_once(
    nc: Client, lane: Lane, workers: list[DurableWorker], caplog: pytest.LogCaptureFixture
) -> None:
    handler = Handler(failing=True)
    for _ in range(2):
        await start_worker(nc, lane, handler, workers)
    advisories = await nc.subscribe(max_deliveries_advisory(lane.stream, lane.consumer))
    parked = await publish_and_wait_parked(nc, lane)
    advisory = await advisories.next_msg(timeout=5)
    await advisories.unsubscribe()

    # Announce the same exhaustion twice more, as a second server-side advisory would: both
    # parkings are acknowledged by the stream (each logs after its ack), and msg-id dedup keeps one copy.
    for _ in range(2):
        await nc.publish(advisory.subject, advisory.data)
    parkings = await eventually(lambda: parked_logs(caplog), lambda logs: len(logs) == 3, timeout_s=10,
                                what="three parkings acknowledged")
    assert [bool(fields["duplicate"]) for fields in parkings] == [False, True, True]

    assert [call.deliveries for call in handler.calls] == list(range(1, MAX_DELIVER + 1))
    info = await nc.jetstream().stream_info(DLQ_STREAM, subjects_filter=lane.dlq)
    assert info.state.subjects == {lane.dlq: 1}
    assert (await nc.jetstream().get_msg(DLQ_STREAM, subject=lane.dlq)).seq == parked.seq


@pytest.mark.slow
async def test_qt_dlq_lists_the_parked_message_and_replays_it_through_the_service(
    nc: Client, nats_server: NatsServer, lane: Lane, workers: list[DurableWorker]
) -> None:
    handler = Handler(failing=True)
    service = NodeService(nc, name=lane.service, version="0.0.1", description="dlq test",
                          metrics=NodeMetrics(lane.service))
    worker = await start_worker(nc, lane, handler, workers)
    worker.register(service)
    await service.start()
    try:
        parked = await publish_and_wait_parked(nc, lane)
        handler.failing = False

        code, listed, errors = await qt(nats_server, "dlq", "ls", "--limit", "1000")
        assert code == 0, errors
        rows = [line for line in listed.splitlines() if lane.consumer in line]
        assert len(rows) == 1, listed
        assert str(parked.seq) in rows[0] and lane.stream in rows[0] and lane.service in rows[0]
        assert f"boom on delivery {MAX_DELIVER}" in rows[0]

        code, replayed, errors = await qt(nats_server, "dlq", "replay", str(parked.seq))
        assert code == 0, errors
        assert f"DLQ seq {parked.seq} ({lane.stream} seq 1): replayed" in replayed
        assert handler.calls[-1].data == PAYLOAD

        code, _, errors = await qt(nats_server, "dlq", "replay", str(parked.seq))
        assert code == 1
        assert errors.startswith("error not_found: "), errors
    finally:
        await service.stop()
