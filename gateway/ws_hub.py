"""WebSocket fan-out: one NATS subscription per channel, one bounded send queue per connection.

A channel's messages are encoded to JSON once and queued to every subscriber; a connection whose
queue is full is closed (slow consumer) instead of slowing the others. Book channels go through a
gateway-side L2 mirror, so a new subscriber gets the mirror's state at once as its snapshot and then
the same continuous updates as everyone else.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from contracts.instruments import instrument
from contracts.money import format_amount
from contracts.subjects import book_feed_subject, wallet_event_subject
from gateway.l2 import L2Mirror
from gateway.views import client_exec

log = logging.getLogger(__name__)

SEND_QUEUE: Final = 1_000
#: Close codes (4000 + the HTTP status they resemble, as many WebSocket APIs do).
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_FLOOD: Final = 4429
CLOSE_SLOW: Final = 4408
PUBLIC: Final = ("book", "trades", "candles", "ticker")
PRIVATE: Final = ("orders", "balances")

Snapshotter = Callable[[str], Awaitable[dict[str, Any]]]


class SlowConsumer(Exception):
    """The connection's send queue is full."""


@dataclass(eq=False)
class Subscriber:
    """One WebSocket connection as the hub sees it: its account and its outgoing queue."""

    account: str
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(SEND_QUEUE))
    channels: set[str] = field(default_factory=set)
    closed: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, text: str) -> None:
        """Queue a message, or mark the connection as too slow to keep."""
        try:
            self.queue.put_nowait(text)
        except asyncio.QueueFull:
            self.closed.set()
            raise SlowConsumer from None


def channel_subject(channel: str, account: str) -> str | None:
    """The NATS subject behind a channel name, or None when the channel does not exist."""
    parts = channel.split(".")
    if parts[0] in PRIVATE and len(parts) == 1:
        return "exec.>" if parts[0] == "orders" else f"{wallet_event_subject(account, '*')}"
    if len(parts) < 2 or parts[0] not in PUBLIC:
        return None
    try:
        instrument(parts[1])
    except Exception:
        return None
    if parts[0] == "book" and len(parts) == 2:
        return book_feed_subject(parts[1])
    if parts[0] in ("trades", "ticker") and len(parts) == 2:
        return f"md.{parts[0]}.{parts[1]}"
    if parts[0] == "candles" and len(parts) == 3 and parts[2] in ("1m", "5m", "1h"):
        return f"md.candles.{parts[1]}.{parts[2]}"
    return None


@dataclass(eq=False)
class Channel:
    """A NATS subscription shared by every subscriber of one channel (and, for books, the mirror)."""

    name: str
    subject: str
    subscribers: set[Subscriber] = field(default_factory=set)
    sub: Subscription | None = None
    mirror: L2Mirror | None = None
    pending: list[dict[str, Any]] = field(default_factory=list)


class Hub:
    """Channels by name; subscribe/unsubscribe connections; decode once, send to all."""

    def __init__(self, nc: Client, snapshot: Snapshotter) -> None:
        self.nc = nc
        self.snapshot = snapshot
        self.channels: dict[str, Channel] = {}
        self._lock = asyncio.Lock()

    async def subscribe(self, who: Subscriber, name: str) -> bool:
        """Add `who` to channel `name` (creating it); False when the channel does not exist."""
        key = name if name.split(".", maxsplit=1)[0] not in PRIVATE else f"{name}:{who.account}"
        subject = channel_subject(name, who.account)
        if subject is None:
            return False
        async with self._lock:
            channel = self.channels.get(key)
            if channel is None:
                channel = self.channels[key] = Channel(key, subject)
                if name.startswith("book."):
                    channel.mirror = L2Mirror()
                channel.sub = await self.nc.subscribe(subject, cb=self._on_message(channel, name, who.account))
                if channel.mirror is not None:
                    await self._resync(channel, name)
            channel.subscribers.add(who)
            who.channels.add(key)
        return True

    def snapshot_of(self, name: str) -> str | None:
        """A book channel's current state as a `snapshot` message (sent right after `subscribed`,
        with no await in between, so no update can slip ahead of it)."""
        channel = self.channels.get(name)
        if channel is None or channel.mirror is None or not channel.mirror.loaded:
            return None
        return _dumps(self._book_snapshot(name, channel.mirror))

    async def unsubscribe(self, who: Subscriber, name: str) -> bool:
        """Remove `who` from a channel; the NATS subscription goes with the last subscriber."""
        key = name if name.split(".", maxsplit=1)[0] not in PRIVATE else f"{name}:{who.account}"
        async with self._lock:
            channel = self.channels.get(key)
            if channel is None or who not in channel.subscribers:
                return False
            channel.subscribers.discard(who)
            who.channels.discard(key)
            if not channel.subscribers:
                del self.channels[key]
                if channel.sub is not None:
                    with contextlib.suppress(Exception):
                        await channel.sub.unsubscribe()
        return True

    async def leave(self, who: Subscriber) -> None:
        """Drop a closed connection from every channel."""
        for key in list(who.channels):
            name = key.split(":", 1)[0]
            await self.unsubscribe(who, name)

    def _on_message(self, channel: Channel, name: str, account: str) -> Callable[[Msg], Awaitable[None]]:
        kind = name.split(".", maxsplit=1)[0]

        async def handle(msg: Msg) -> None:
            try:
                if kind == "book":
                    await self._book(channel, name, msgpack.unpackb(msg.data, raw=False))
                    return
                text = _private(kind, msg, account) if kind in PRIVATE else _public(name, msg.data)
                if text is not None:
                    self._broadcast(channel, text)
            except Exception:
                log.exception("ws channel message dropped")

        return handle

    async def _book(self, channel: Channel, name: str, message: dict[str, Any]) -> None:
        mirror = channel.mirror
        assert mirror is not None
        if not mirror.loaded:
            channel.pending.append(message)  # the snapshot is on its way
            return
        applied = mirror.apply(message)
        if applied.kind == "gap":
            await self._resync(channel, name)
            return
        if applied.kind == "update":
            spec = instrument(name.split(".")[1])
            self._broadcast(channel, _dumps({
                "channel": name, "type": "update", "seq": applied.seq, "prev_seq": applied.prev_seq,
                "checksum": applied.checksum, "bids": _levels(spec, applied.bids), "asks": _levels(spec, applied.asks),
            }))

    async def _resync(self, channel: Channel, name: str) -> None:
        """Load a fresh snapshot, replay what arrived meanwhile, and send everyone the new state."""
        mirror = channel.mirror
        assert mirror is not None
        mirror.loaded = False
        snap = await self.snapshot(name.split(".")[1])
        mirror.load(snap["seq"], [tuple(x) for x in snap["bids"]], [tuple(x) for x in snap["asks"]])
        pending, channel.pending = channel.pending, []
        for message in pending:
            if mirror.apply(message).kind == "gap":
                mirror.load(snap["seq"], [tuple(x) for x in snap["bids"]], [tuple(x) for x in snap["asks"]])
                break
        self._broadcast(channel, _dumps(self._book_snapshot(name, mirror)))

    @staticmethod
    def _book_snapshot(name: str, mirror: L2Mirror) -> dict[str, Any]:
        spec = instrument(name.split(".")[1])
        bids, asks = mirror.depth()
        return {"channel": name, "type": "snapshot", "seq": mirror.seq, "checksum": mirror.checksum(),
                "bids": _levels(spec, bids), "asks": _levels(spec, asks)}

    def _broadcast(self, channel: Channel, text: str) -> None:
        for who in list(channel.subscribers):
            if who.closed.is_set():
                continue
            with contextlib.suppress(SlowConsumer):  # the connection closes itself; others go on
                who.send(text)


def _levels(spec: Any, levels: list[tuple[int, int]]) -> list[list[str]]:
    return [[format_amount(spec.quote, p), format_amount(spec.base, q)] for p, q in levels]


def _dumps(body: dict[str, Any]) -> str:
    return json.dumps(body, separators=(",", ":"))


def _public(name: str, data: bytes) -> str | None:
    """Market data feeds are JSON already: wrap them with the channel name."""
    body = json.loads(data)
    return _dumps({"channel": name, "type": name.split(".", maxsplit=1)[0], "data": body})


def _private(kind: str, msg: Msg, account: str) -> str | None:
    """Execution reports that concern the account, or its wallet events, as decimal-string JSON."""
    body = msgpack.unpackb(msg.data, raw=False)
    if kind == "orders":
        mine = client_exec(body, account)  # the account's own side only, as in the HTTP replies
        return None if mine is None else _dumps({"channel": "orders", "type": "order", "data": mine})
    asset = body.get("asset", "")
    with contextlib.suppress(Exception):
        body["amount"] = format_amount(asset, body["amount"])
    return _dumps({"channel": "balances", "type": "balance", "data": body})

