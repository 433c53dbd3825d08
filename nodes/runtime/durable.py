"""Durable JetStream consumers that retry a failing message with backoff, then park it in `DLQ`.

A worker pulls from its durable consumer and naks a failed message with the next backoff delay.
After `MAX_DELIVER` deliveries the server gives up on it and announces a MAX_DELIVERIES advisory;
one instance of the service (queue group) copies the original into `DLQ`, where `qt dlq ls` shows
it and `qt dlq replay` runs it through the handler again once the cause is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, RawStreamMsg
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.trace import SpanKind

from contracts.dlq import DlqEntry, DlqReplay, DlqReplayReply
from contracts.errors import ErrorCode, QtError
from contracts.subjects import (
    DLQ_CONSUMER,
    DLQ_DELIVERIES,
    DLQ_LAST_ERROR,
    DLQ_ORIGIN_SEQ,
    DLQ_ORIGIN_STREAM,
    DLQ_ORIGIN_SUBJECT,
    DLQ_REPLAY_ENDPOINT,
    DLQ_SERVICE,
    DLQ_STREAM,
    MAX_DELIVER,
    REDELIVERY_BACKOFF_S,
    dlq_subject,
)
from mesh.dlq import read_parked
from mesh.jetstream import ensure_named
from nodes.runtime.log import kv
from nodes.runtime.service import NodeService
from nodes.runtime.tracing import fail, handling

log = logging.getLogger(__name__)
_TRACER = trace.get_tracer("qt.durable")

FETCH_BATCH: Final = 100
FETCH_TIMEOUT_S: Final = 1.0
#: How long a delivered message may stay unacknowledged (a crashed or stuck worker) before redelivery.
ACK_WAIT_S: Final = 30.0
#: Last error per stream sequence, kept for the DLQ header; bounded so a flood of failures cannot grow it.
MAX_REMEMBERED_ERRORS: Final = 10_000
UNKNOWN_ERROR: Final = "unknown (handled by another instance)"
ERROR_TEXT_MAX: Final = 500
PARK_ATTEMPTS: Final = 3
REPLAYED: Final = "replayed"
DLQ_HEADERS: Final = frozenset({
    DLQ_ORIGIN_STREAM, DLQ_ORIGIN_SUBJECT, DLQ_ORIGIN_SEQ, DLQ_CONSUMER, DLQ_SERVICE, DLQ_LAST_ERROR, DLQ_DELIVERIES,
})


def max_deliveries_advisory(stream: str, consumer: str) -> str:
    """The subject on which the server announces a message that exhausted `max_deliver`."""
    return f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{stream}.{consumer}"


def dlq_msg_id(stream: str, consumer: str, seq: int) -> str:
    """Msg-id of a parked message: one origin message is parked once, whichever instance parks it."""
    return f"{stream}:{consumer}:{seq}"


def redelivery_delay(deliveries: int) -> float:
    """Pause before the next delivery of a message that failed on its `deliveries`-th delivery."""
    return REDELIVERY_BACKOFF_S[min(deliveries, len(REDELIVERY_BACKOFF_S)) - 1]


@dataclass(frozen=True)
class DeliveredMessage:
    """One message as a handler sees it; `deliveries` counts this delivery (1 on the first)."""

    subject: str
    data: bytes
    headers: dict[str, str]
    stream_seq: int
    deliveries: int


MessageHandler = Callable[[DeliveredMessage], Awaitable[None]]


class DurableWorker:
    """Feeds a durable pull consumer to `handler`: ack on success, nak with backoff, park when exhausted."""

    def __init__(
        self, js: JetStreamContext, nc: Client, *, stream: str, consumer: str, filter_subjects: Sequence[str],
        service: str, handler: MessageHandler,
    ) -> None:
        self.js = js
        self.nc = nc
        self.stream = stream
        self.consumer = consumer
        self.filter_subjects = list(filter_subjects)
        self.service = service
        self.handler = handler
        self._errors: OrderedDict[int, str] = OrderedDict()
        self._advisories: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def consumer_config(self) -> ConsumerConfig:
        """The durable consumer: explicit acks, at most `MAX_DELIVER` deliveries, from the first message.

        No server-side `backoff`: the server would then use its first step (0.2 s) as the ack wait,
        redelivering any message of a fetched batch not acked within it. The worker applies the
        backoff itself when it naks a failure; `ACK_WAIT_S` only covers a worker that died.
        """
        return ConsumerConfig(
            durable_name=self.consumer, filter_subjects=self.filter_subjects,
            deliver_policy=DeliverPolicy.ALL, ack_policy=AckPolicy.EXPLICIT,
            ack_wait=ACK_WAIT_S, max_deliver=MAX_DELIVER,
            description=f"{self.service}: dead letters go to {dlq_subject(self.stream, self.consumer)}",
        )

    async def start(self) -> None:
        """Create or update the consumer, listen for its advisories, then start pulling."""
        await ensure_named(self.js, streams=(DLQ_STREAM,), buckets=())
        await self.js.add_consumer(self.stream, self.consumer_config())
        # Subscribed before the first fetch and drained after the last one (see `stop`): the server
        # announces an exhausted message once, to whoever listens at that moment.
        self._advisories = await self.nc.subscribe(
            max_deliveries_advisory(self.stream, self.consumer), queue="dlq", cb=self._on_advisory
        )
        pull = await self.js.pull_subscribe_bind(self.consumer, stream=self.stream)
        self._stopping = False
        self._task = asyncio.create_task(self._pull(pull), name=f"durable-{self.stream}-{self.consumer}")

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Finish the message in hand (bounded), hand the rest of the batch back, stop listening."""
        self._stopping = True
        if self._task is not None:
            # The pending fetch is left to expire rather than cancelled: messages the server sent
            # for a cancelled fetch would wait out ACK_WAIT_S before anyone else saw them.
            _, running = await asyncio.wait({self._task}, timeout=FETCH_TIMEOUT_S + drain_timeout_s)
            for task in running:
                task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        if self._advisories is not None:
            if not self.nc.is_closed:
                await self._advisories.drain()  # type: ignore[no-untyped-call]  # nats.py leaves it unannotated
            self._advisories = None

    async def redeliver(self, dlq_seq: int) -> DlqReplayReply:
        """Run the message parked at `dlq_seq` through the handler; on success it leaves `DLQ`."""
        parked = await read_parked(self.js, dlq_seq)
        if not self._owns(parked):
            raise _not_ours(parked, [self])
        return await self._replay(parked)

    def register(self, service: NodeService) -> None:
        """Serve `<service>.dlq_replay` for this worker (before `service.start()`); workers share it."""
        if service.name != self.service:
            raise ValueError(f"worker parks for service {self.service!r}, not {service.name!r}")
        for route in service.routes:
            if route.name == DLQ_REPLAY_ENDPOINT and isinstance(route.handler, _Replayer):
                route.handler.workers.append(self)
                return
        service.route(DLQ_REPLAY_ENDPOINT, DlqReplay)(_Replayer([self]))

    # --- consuming --------------------------------------------------------------------------------

    async def _pull(self, pull: JetStreamContext.PullSubscription) -> None:
        try:
            while not self._stopping:
                try:
                    batch = await pull.fetch(FETCH_BATCH, timeout=FETCH_TIMEOUT_S)
                except NatsTimeoutError:
                    continue
                except Exception:  # a reconnect or a server restart: keep pulling once it is back
                    log.warning("fetch failed", exc_info=True, extra=kv(stream=self.stream, consumer=self.consumer))
                    await asyncio.sleep(FETCH_TIMEOUT_S)
                    continue
                for n, msg in enumerate(batch):
                    if self._stopping:  # let another instance have the rest now, not after ACK_WAIT_S
                        await asyncio.gather(*(m.nak() for m in batch[n:]), return_exceptions=True)
                        break
                    await self._handle(msg)
        finally:
            if not self.nc.is_closed:
                await pull.unsubscribe()

    async def _handle(self, msg: Msg) -> None:
        meta = msg.metadata
        delivered = DeliveredMessage(
            subject=msg.subject, data=msg.data, headers=dict(msg.headers or {}),
            stream_seq=meta.sequence.stream, deliveries=meta.num_delivered,
        )
        try:
            with handling(_TRACER, f"{self.stream}.{self.consumer}", delivered.headers, SpanKind.CONSUMER) as span:
                try:
                    await self.handler(delivered)
                except Exception as exc:
                    fail(span, describe(exc))
                    raise
        except Exception as exc:
            error = describe(exc)
            self._remember(delivered.stream_seq, error)
            # The last delivery is nak'd at once so the server declares it exhausted without waiting.
            delay = redelivery_delay(delivered.deliveries) if delivered.deliveries < MAX_DELIVER else None
            log.warning("handler failed", extra=kv(
                stream=self.stream, consumer=self.consumer, seq=delivered.stream_seq,
                deliveries=delivered.deliveries, retry_in_s=delay, error=error))
            await _settle(msg.nak(delay=delay))
            return
        self._errors.pop(delivered.stream_seq, None)
        await _settle(msg.ack())

    def _remember(self, seq: int, error: str) -> None:
        self._errors[seq] = error
        self._errors.move_to_end(seq)
        while len(self._errors) > MAX_REMEMBERED_ERRORS:
            self._errors.popitem(last=False)

    # --- parking ----------------------------------------------------------------------------------

    async def _on_advisory(self, msg: Msg) -> None:
        try:
            event = json.loads(msg.data)
            seq, deliveries = int(event["stream_seq"]), int(event.get("deliveries", MAX_DELIVER))
        except (ValueError, KeyError, TypeError):
            log.warning("unreadable max-deliveries advisory", extra=kv(subject=msg.subject))
            return
        error = self._errors.pop(seq, UNKNOWN_ERROR)
        for attempt in range(1, PARK_ATTEMPTS + 1):
            try:
                await self._park(seq, deliveries, error)
                return
            except NotFoundError:  # gone from the origin stream (limits, purge): nothing left to park
                log.error("exhausted message no longer in its stream; not parked", extra=kv(
                    stream=self.stream, consumer=self.consumer, seq=seq, error=error))
                return
            except Exception:  # the advisory comes once, so a passing failure must not lose the message
                if attempt == PARK_ATTEMPTS:
                    log.exception("could not park exhausted message", extra=kv(
                        stream=self.stream, consumer=self.consumer, seq=seq, error=error))
                    return
                await asyncio.sleep(0.5 * attempt)

    async def _park(self, seq: int, deliveries: int, error: str) -> None:
        original = await self.js.get_msg(self.stream, seq)
        # Nats-* headers steer the server (msg-id dedup, expected sequence, rollup, TTL); copied
        # into DLQ they would refuse or deduplicate the parked copy, so only the others travel.
        headers = {k: v for k, v in (original.headers or {}).items() if not k.startswith("Nats-")}
        headers |= {
            DLQ_ORIGIN_STREAM: self.stream,
            DLQ_ORIGIN_SUBJECT: original.subject or "",
            DLQ_ORIGIN_SEQ: str(seq),
            DLQ_CONSUMER: self.consumer,
            DLQ_SERVICE: self.service,
            DLQ_LAST_ERROR: error,
            DLQ_DELIVERIES: str(deliveries),
            "Nats-Msg-Id": dlq_msg_id(self.stream, self.consumer, seq),
        }
        ack = await self.js.publish(
            dlq_subject(self.stream, self.consumer), original.data or b"", headers=headers, stream=DLQ_STREAM
        )
        log.warning("parked in DLQ", extra=kv(
            stream=self.stream, consumer=self.consumer, seq=seq, dlq_seq=ack.seq, duplicate=ack.duplicate,
            error=error))

    # --- replaying --------------------------------------------------------------------------------

    def _owns(self, parked: RawStreamMsg) -> bool:
        headers = parked.headers or {}
        return headers.get(DLQ_ORIGIN_STREAM) == self.stream and headers.get(DLQ_CONSUMER) == self.consumer

    async def _replay(self, parked: RawStreamMsg) -> DlqReplayReply:
        entry = DlqEntry.parked(parked.seq or 0, parked.time, parked.headers, len(parked.data or b""))
        # The handler sees the headers the original carried, not the ones parking added.
        headers = {k: v for k, v in (parked.headers or {}).items()
                   if k not in DLQ_HEADERS and not k.startswith("Nats-")}
        delivered = DeliveredMessage(
            subject=entry.origin_subject, data=parked.data or b"", headers=headers,
            stream_seq=entry.origin_seq, deliveries=entry.deliveries + 1,
        )
        try:
            await self.handler(delivered)
        except Exception as exc:
            error = describe(exc)
            raise QtError(ErrorCode.UNAVAILABLE, f"replay of DLQ seq {entry.seq} failed, still parked: {error}",
                          {"seq": entry.seq, "error": error}) from exc
        with contextlib.suppress(NotFoundError):  # a concurrent replay of the same seq removed it first
            await self.js.delete_msg(DLQ_STREAM, entry.seq)
        log.info("replayed from DLQ", extra=kv(stream=self.stream, consumer=self.consumer, dlq_seq=entry.seq,
                                               seq=entry.origin_seq))
        return DlqReplayReply(seq=entry.seq, origin_stream=entry.origin_stream, origin_seq=entry.origin_seq,
                              outcome=REPLAYED)


class _Replayer:
    """The `dlq_replay` endpoint of a service: dispatches a parked message to the worker that parked it."""

    def __init__(self, workers: list[DurableWorker]) -> None:
        self.workers = workers

    async def __call__(self, command: DlqReplay) -> DlqReplayReply:
        parked = await read_parked(self.workers[0].js, command.seq)
        for worker in self.workers:
            if worker._owns(parked):
                return await worker._replay(parked)
        raise _not_ours(parked, self.workers)


def _not_ours(parked: RawStreamMsg, workers: list[DurableWorker]) -> QtError:
    headers = parked.headers or {}
    origin = f"{headers.get(DLQ_ORIGIN_STREAM, '?')}/{headers.get(DLQ_CONSUMER, '?')}"
    mine = ", ".join(f"{w.stream}/{w.consumer}" for w in workers)
    return QtError(ErrorCode.VALIDATION, f"DLQ seq {parked.seq} was parked by {origin}, "
                   f"service {workers[0].service} replays only {mine}", {"seq": parked.seq})


def describe(exc: BaseException) -> str:
    """An error as one header-safe line: `code: message` for contract errors, else `Type: text`."""
    text = f"{exc.code}: {exc.message}" if isinstance(exc, QtError) else f"{type(exc).__name__}: {exc}"
    return " ".join(text.split())[:ERROR_TEXT_MAX]  # headers cannot carry CR/LF


async def _settle(reply: Awaitable[None]) -> None:
    # An ack or nak lost with the connection is not fatal: the server redelivers after ACK_WAIT_S.
    try:
        await reply
    except Exception:
        log.warning("ack/nak not sent", exc_info=True)
