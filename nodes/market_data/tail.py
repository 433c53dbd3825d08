"""Reads TRADES from its first message for as long as the node runs: first the rebuild, then live.

One consumer does both, so nothing is lost or counted twice at the boundary: every message is
folded once, by stream sequence. It is a plain push consumer (no acks, no flow control), like the
matching journal's tail; a gap in the consumer sequence, or a consumer the server lost, re-subscribes
from the last sequence folded. A durable would not help: the state is in memory and rebuilt from
the first message on every start, so there is no position worth keeping on the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import msgpack
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from contracts.clearing import TradeEvent
from contracts.subjects import TRADES_STREAM
from nodes.market_data.candles import Print
from nodes.market_data.state import Change, MarketState
from nodes.runtime.log import kv
from nodes.runtime.tails import consumer_exists, stream_replicas

log = logging.getLogger(__name__)

#: How long the tail waits for a message before checking that its consumer still exists.
IDLE_CHECK_S: Final = 5.0

OnChange = Callable[[Change, str], Awaitable[None]]


def read_event(data: bytes) -> TradeEvent:
    """A TRADES message as clearing publishes it (msgpack, integer units)."""
    return TradeEvent.model_validate(msgpack.unpackb(data, raw=False))


def as_print(event: TradeEvent) -> Print:
    """The trade an event names, as the market state keeps it."""
    return Print(trade_id=event.trade_id, price=event.price, qty=event.qty, quote=event.quote,
                 taker_side=str(event.taker_side), ts_ns=event.ts_ns)


class TradesTail:
    """Folds TRADES into `state`; once caught up with the stream as it was at start, `ready` is set and
    `on_change` hears every change from then on."""

    def __init__(self, js: JetStreamContext, state: MarketState, on_change: OnChange) -> None:
        self.js = js
        self.state = state
        self.on_change = on_change
        self.ready = asyncio.Event()
        self.skipped = 0

    async def run(self) -> None:
        """Rebuild, then tail forever (cancel to stop)."""
        started = time.monotonic()
        target = (await self.js.stream_info(TRADES_STREAM)).state.last_seq
        if target == 0:
            self._mark_ready(started)
        while True:
            sub = await self._subscribe(self.state.applied_seq + 1)
            try:
                await self._consume(sub, target, started)
            finally:
                with contextlib.suppress(Exception):
                    await sub.unsubscribe()

    async def _consume(self, sub: Any, target: int, started: float) -> None:
        expected = 1
        while True:
            try:
                msg = await sub.next_msg(timeout=IDLE_CHECK_S)
            except NatsTimeoutError:
                if not await consumer_exists(sub):
                    log.warning("trades consumer gone; re-subscribing", extra=kv(applied=self.state.applied_seq))
                    return
                continue
            meta = msg.metadata
            if meta.sequence.consumer != expected:
                log.warning("trades gap; re-subscribing", extra=kv(expected=expected, got=meta.sequence.consumer))
                return
            expected += 1
            await self._fold(meta.sequence.stream, msg.subject, msg.data)
            if not self.ready.is_set() and (meta.num_pending == 0 or self.state.applied_seq >= target):
                self._mark_ready(started)

    async def _fold(self, seq: int, subject: str, data: bytes) -> None:
        if seq <= self.state.applied_seq:
            return
        try:
            event = read_event(data)
        except Exception as exc:  # a message nobody can read changes nothing, on every rebuild alike
            self.skipped += 1
            self.state.skip(seq)
            log.warning("unreadable trade event skipped", extra=kv(seq=seq, subject=subject, error=repr(exc)[:200]))
            return
        change = self.state.apply(seq, event.instrument, event.kind, as_print(event))
        if change is not None and self.ready.is_set():
            await self.on_change(change, event.instrument)

    def _mark_ready(self, started: float) -> None:
        self.ready.set()
        log.info("trades rebuilt", extra=kv(applied_seq=self.state.applied_seq, skipped=self.skipped,
                                            seconds=round(time.monotonic() - started, 3)))

    async def _subscribe(self, start: int) -> Any:
        config = ConsumerConfig(
            deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=start, ack_policy=AckPolicy.NONE,
            flow_control=False, mem_storage=True, inactive_threshold=300.0,
            num_replicas=await stream_replicas(self.js, TRADES_STREAM),
        )
        return await self.js.subscribe("trades.>", stream=TRADES_STREAM, config=config, manual_ack=True,
                                       pending_msgs_limit=-1, pending_bytes_limit=-1)
