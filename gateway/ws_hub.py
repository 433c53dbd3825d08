"""WebSocket fan-out: one NATS subscription per channel (one for every `orders` channel together), frames
encoded once per message for everyone.

Trades, candles, tickers and the private channels are queued to each subscriber (one bounded send
queue per connection; a connection whose queue is full is closed as a slow consumer). Book channels
are conflated instead: the channel keeps its last few updates and each connection only a cursor (the
seq it has), so a connection that reads slower than the feed never builds a backlog: whenever its
sender is free it gets one frame that brings it to the current seq, an `update` spanning the updates
it missed (prev_seq = its seq) if the channel still has them, otherwise a `snapshot` of the book.
Each such frame is encoded once and shared by every connection at the same seq. Book channels go
through a gateway-side L2 mirror, which is where those snapshots come from.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Final

import msgpack
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import Header

from contracts.instruments import instrument
from contracts.matching import exec_reports
from contracts.money import format_amount
from contracts.subjects import book_feed_subject, wallet_event_subject
from gateway.l2 import Applied, L2Mirror
from gateway.problems import encode_json
from gateway.views import client_exec
from mesh.rpc import subscribed

log = logging.getLogger(__name__)

SEND_QUEUE: Final = 1_000
#: Book updates a channel keeps: a connection that missed up to this many gets them as one `update`
#: frame spanning them (only the levels they changed); further behind, one snapshot (every level). At
#: 1,000 updates/s one pass over 500 senders takes tens of ms, so a busy connection is routinely tens of
#: updates behind: a span keeps its frame small where a snapshot would repeat the whole book.
CATCH_UP: Final = 64
#: Formatted prices and quantities a book channel keeps (a snapshot repeats every level's strings).
LEVEL_TEXTS: Final = 4_096
#: Close codes (4000 + the HTTP status they resemble, as many WebSocket APIs do).
CLOSE_UNAUTHORIZED: Final = 4401
CLOSE_BAD_REQUEST: Final = 4400
CLOSE_FLOOD: Final = 4429
CLOSE_SLOW: Final = 4408
#: Messages a channel handles before it lets the senders run: nats.py hands a subscription's backlog
#: to its callback without yielding, so a burst larger than a send queue would otherwise overflow even
#: a connection that reads as fast as it can.
YIELD_EVERY: Final = 64
#: Parked senders a book update wakes per event-loop pass. A pass over 500 connections costs ~10 ms of
#: socket writes; woken all at once they would all send the state of the pass's start while newer
#: updates wait in the NATS socket behind them. In chunks, the NATS reader runs between chunks, so each
#: connection gets the state of about a millisecond before its turn.
WAKE_CHUNK: Final = 16
#: Execution-report msg-ids an `orders` channel remembers: an engine taking over republishes reports the
#: old owner may have sent already (the stream drops the copies; core subscribers do not), and a paused
#: old owner's last batch can arrive late. Each is a copy with the same msg-id, sent once to the client.
SEEN_REPORTS: Final = 4_096
PUBLIC: Final = ("book", "trades", "candles", "ticker")
PRIVATE: Final = ("orders", "balances")

Snapshotter = Callable[[str], Awaitable[dict[str, Any]]]


class SlowConsumer(Exception):
    """The connection's send queue is full."""


@dataclass(eq=False)
class Subscriber:
    """One WebSocket connection as the hub sees it: its account, its queue, its place in each book."""

    account: str
    queue: deque[str] = field(default_factory=deque)
    """Frames other than book data, in order (replies, heartbeats, trades, private events)."""
    books: dict[str, BookCursor] = field(default_factory=dict)
    channels: set[str] = field(default_factory=set)
    closed: asyncio.Event = field(default_factory=asyncio.Event)
    wake: asyncio.Event = field(default_factory=asyncio.Event)

    def send(self, text: str) -> None:
        """Queue a message, or mark the connection as too slow to keep."""
        if len(self.queue) >= SEND_QUEUE:
            self.closed.set()
            self.wake.set()
            raise SlowConsumer
        self.queue.append(text)
        self.wake.set()

    def ready(self) -> list[str]:
        """Everything there is to send now: queued frames first, then what each book is missing."""
        out = list(self.queue)
        self.queue.clear()
        for cursor in self.books.values():
            frames = cursor.channel.frames_after(cursor.seq)
            if frames:
                out += frames
                cursor.seq = cursor.channel.seq
        return out

    async def take(self) -> list[str]:
        """Wait until there is something to send, and take it; `SlowConsumer` once the queue overflowed."""
        while True:
            self.wake.clear()  # cleared before looking: a wake after this look is never lost
            if self.closed.is_set():
                raise SlowConsumer
            frames = self.ready()
            if frames:
                return frames
            for cursor in self.books.values():  # parked: the next book update must wake it
                cursor.channel.park(self)
            await self.wake.wait()


@dataclass(eq=False, slots=True)
class BookCursor:
    """Where one connection stands in one book channel: the seq of the last state it was sent (None: none yet)."""

    channel: Channel
    seq: int | None = None


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
    seq: int = 0
    """A book's seq as last published to its subscribers."""
    recent: deque[Applied] = field(default_factory=lambda: deque(maxlen=CATCH_UP))
    """A book's last updates, oldest first, continuous up to `seq`."""
    idle: dict[Subscriber, None] = field(default_factory=dict)
    """A book's subscribers whose senders wait with nothing to send, in the order they parked: the only
    ones an update wakes (waking all 500 of a busy channel on every update would cost more than the
    sends). Those parked before the last update come first: they are the ones behind."""
    _waking: bool = False
    frames: dict[int, str] = field(default_factory=dict)
    """Encoded update frames reaching `seq`, by the seq they start from (the plain update, and spans)."""
    texts: LevelTexts | None = None
    """A book's levels as decimal strings, formatted once per price and per quantity."""
    _snapshot: tuple[int, str] | None = None
    seen: dict[str, None] = field(default_factory=dict)
    """An `orders` channel's last `SEEN_REPORTS` execution-report msg-ids, oldest first."""

    def first_time(self, msg_id: str | None) -> bool:
        """Whether a report with this msg-id is new to the channel (remembered from now on)."""
        if msg_id is None:
            return True
        if msg_id in self.seen:
            return False
        self.seen[msg_id] = None
        if len(self.seen) > SEEN_REPORTS:
            del self.seen[next(iter(self.seen))]
        return True

    def frames_after(self, seq: int | None) -> list[str]:
        """What a connection at `seq` needs to reach the book's current state: one `update` frame from
        its seq (spanning every update it missed, when the recent ones continue from it), else one
        snapshot; nothing while a resync is loading."""
        if seq == self.seq or self.mirror is None or not self.mirror.loaded:
            return []
        if seq is not None:
            text = self.frames.get(seq)
            if text is not None:
                return [text]
            for back, applied in enumerate(reversed(self.recent)):
                if applied.prev_seq == seq:
                    return [self._span(seq, len(self.recent) - 1 - back)]
        return [self.snapshot()]

    def _span(self, seq: int, first: int) -> str:
        """One update from `seq` to the current seq: the last total of every level changed since, which
        is exactly what applying the missed updates one by one would leave (levels are absolute)."""
        bids: dict[int, int] = {}
        asks: dict[int, int] = {}
        for k in range(first, len(self.recent)):
            bids.update(self.recent[k].bids)
            asks.update(self.recent[k].asks)
        text = self.frames[seq] = self._update_frame(Applied(
            "update", self.seq, seq, list(bids.items()), list(asks.items()), self.recent[-1].checksum))
        return text

    def snapshot(self) -> str:
        """The book at `seq` as a `snapshot` frame, encoded once per seq whoever asks."""
        if self._snapshot is None or self._snapshot[0] != self.seq:
            assert self.mirror is not None and self.texts is not None
            bids, asks = self.mirror.depth()
            self._snapshot = (self.seq, _dumps({
                "channel": self.name, "type": "snapshot", "seq": self.seq, "checksum": self.mirror.checksum(),
                "bids": self.texts.levels(bids), "asks": self.texts.levels(asks)}))
        return self._snapshot[1]

    def publish(self, applied: Applied) -> None:
        """A book update: encode it once, keep it for the connections that are behind, wake everyone."""
        self.recent.append(applied)
        self.seq = applied.seq
        self.frames = {applied.prev_seq: self._update_frame(applied)}
        if not self._waking and self.idle:
            self._waking = True
            asyncio.get_running_loop().call_soon(self._wake_next)

    def reset(self, seq: int) -> None:
        """The mirror was reloaded: no update continues from before, everyone gets a snapshot."""
        self.recent.clear()
        self.frames = {}
        self.seq = seq
        self._snapshot = None
        self.wake_all()

    def _update_frame(self, applied: Applied) -> str:
        assert self.texts is not None
        return _dumps({"channel": self.name, "type": "update", "seq": applied.seq, "prev_seq": applied.prev_seq,
                       "checksum": applied.checksum, "bids": self.texts.levels(applied.bids),
                       "asks": self.texts.levels(applied.asks)})

    def park(self, who: Subscriber) -> None:
        """`who`'s sender waits for this book to move: queued after every sender parked before it."""
        self.idle.pop(who, None)
        self.idle[who] = None

    def wake_all(self) -> None:
        """Wake every sender parked on this book; a busy one looks at its cursors before it parks again."""
        idle, self.idle = self.idle, {}
        for who in idle:
            who.wake.set()

    def _wake_next(self) -> None:
        """Wake the next `WAKE_CHUNK` parked senders that are behind the book, then let the loop run (the
        NATS reader, the senders just woken) before the next chunk. A sender parked at the current seq
        means every one after it is current too (they parked later), so the pass ends there."""
        self._waking = False
        if self.mirror is None or not self.mirror.loaded:
            return  # a resync is loading: `reset` wakes everyone when it is done
        woken = 0
        while self.idle and woken < WAKE_CHUNK:
            who = next(iter(self.idle))
            cursor = who.books.get(self.name)
            if cursor is not None and cursor.seq == self.seq:
                return
            del self.idle[who]
            who.wake.set()
            woken += 1
        if self.idle:
            self._waking = True
            asyncio.get_running_loop().call_soon(self._wake_next)


class LevelTexts:
    """An instrument's `[price, qty]` levels as decimal strings; each price and quantity is formatted once
    (formatting every level of every snapshot cost ~0.25 ms per snapshot of 80 levels)."""

    def __init__(self, symbol: str) -> None:
        spec = instrument(symbol)
        self.quote, self.base = spec.quote, spec.base
        self.prices: dict[int, str] = {}
        self.qtys: dict[int, str] = {}

    def levels(self, levels: list[tuple[int, int]]) -> list[list[str]]:
        """The levels as the API shows them."""
        return [[self._text(self.prices, self.quote, p), self._text(self.qtys, self.base, q)] for p, q in levels]

    @staticmethod
    def _text(known: dict[int, str], asset: str, units: int) -> str:
        text = known.get(units)
        if text is None:
            if len(known) >= LEVEL_TEXTS:  # bounded: start over rather than track ages
                known.clear()
            text = known[units] = format_amount(asset, units)
        return text


class Hub:
    """Channels by name; subscribe/unsubscribe connections; decode once, send to all."""

    def __init__(self, nc: Client, snapshot: Snapshotter) -> None:
        self.nc = nc
        self.snapshot = snapshot
        self.channels: dict[str, Channel] = {}
        self._lock = asyncio.Lock()
        self.exec_sub: Subscription | None = None
        """The one `exec.>` subscription every `orders` channel shares (an entry is read once, then handed
        to the channels of the accounts in its reports), while any is open."""
        self._exec_handled = 0

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
                if name == "orders":  # every `orders` channel shares one subscription
                    if self.exec_sub is None:
                        self.exec_sub = await self.nc.subscribe(subject, cb=self._on_exec)
                        await subscribed(self.nc)  # the `subscribed` reply promises every later report
                else:
                    if name.startswith("book."):
                        channel.mirror, channel.texts = L2Mirror(), LevelTexts(name.split(".")[1])
                    channel.sub = await self.nc.subscribe(subject, cb=self._on_message(channel, name, who.account))
                    if channel.mirror is not None:
                        await self._resync(channel, name)  # its request follows the SUB on this connection
                    else:  # the `subscribed` reply promises every later event: the server must have the SUB
                        await subscribed(self.nc)
            channel.subscribers.add(who)
            who.channels.add(key)
        return True

    def follow(self, who: Subscriber, name: str) -> None:
        """Start sending book channel `name` to `who` (a snapshot first): called right after its
        `subscribed` reply is queued, so the snapshot can never overtake that reply."""
        channel = self.channels.get(name)
        if channel is not None and channel.mirror is not None and who in channel.subscribers:
            who.books[name] = BookCursor(channel)
            who.wake.set()

    async def unsubscribe(self, who: Subscriber, name: str) -> bool:
        """Remove `who` from a channel; the NATS subscription goes with the last subscriber."""
        key = name if name.split(".", maxsplit=1)[0] not in PRIVATE else f"{name}:{who.account}"
        async with self._lock:
            channel = self.channels.get(key)
            if channel is None or who not in channel.subscribers:
                return False
            channel.subscribers.discard(who)
            channel.idle.pop(who, None)
            who.channels.discard(key)
            who.books.pop(key, None)
            if not channel.subscribers:
                del self.channels[key]
                if channel.sub is not None:
                    with contextlib.suppress(Exception):
                        await channel.sub.unsubscribe()
                if name == "orders" and self.exec_sub is not None and not any(
                        other.startswith("orders:") for other in self.channels):
                    with contextlib.suppress(Exception):
                        await self.exec_sub.unsubscribe()
                    self.exec_sub = None
        return True

    async def leave(self, who: Subscriber) -> None:
        """Drop a closed connection from every channel."""
        for key in list(who.channels):
            name = key.split(":", 1)[0]
            await self.unsubscribe(who, name)

    def _on_message(self, channel: Channel, name: str, account: str) -> Callable[[Msg], Awaitable[None]]:
        kind = name.split(".", maxsplit=1)[0]
        handled = 0

        async def handle(msg: Msg) -> None:
            nonlocal handled
            handled += 1
            if handled % YIELD_EVERY == 0:
                await asyncio.sleep(0)
            try:
                if kind == "book":
                    await self._book(channel, name, msgpack.unpackb(msg.data, raw=False))
                    return
                frame = _balance(msg) if kind in PRIVATE else _public(name, msg.data)
                if frame is not None:
                    self._broadcast(channel, frame)
            except Exception:
                log.exception("ws channel message dropped")

        return handle

    async def _on_exec(self, msg: Msg) -> None:
        """One EXEC message, read once: each report to the `orders` channel of every account it concerns
        (a fill to both sides), each channel sending a msg-id once."""
        self._exec_handled += 1
        if self._exec_handled % YIELD_EVERY == 0:
            await asyncio.sleep(0)
        try:
            frames: dict[Channel, list[str]] = {}
            for report in exec_reports(msg.data):
                for account in _concerned(report):
                    channel = self.channels.get(f"orders:{account}")
                    if channel is None:
                        continue
                    view = client_exec(report, account)  # the account's own side only, as in the HTTP replies
                    if view is not None:
                        frames.setdefault(channel, []).append(
                            _dumps({"channel": "orders", "type": "order", "data": view}))
            msg_id = _msg_id(msg)
            for channel, texts in frames.items():
                if channel.first_time(msg_id):
                    for text in texts:
                        self._broadcast(channel, text)
        except Exception:
            log.exception("ws orders message dropped")

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
            channel.publish(applied)

    async def _resync(self, channel: Channel, name: str) -> None:
        """Load a fresh snapshot, replay what arrived meanwhile, and give everyone the new state."""
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
        channel.reset(mirror.seq)

    def _broadcast(self, channel: Channel, text: str) -> None:
        for who in list(channel.subscribers):
            if who.closed.is_set():
                continue
            with contextlib.suppress(SlowConsumer):  # the connection closes itself; others go on
                who.send(text)


def _dumps(body: dict[str, Any]) -> str:
    return encode_json(body).decode()


def _public(name: str, data: bytes) -> str | None:
    """Market data feeds are JSON already: wrap them with the channel name."""
    body = json.loads(data)
    return _dumps({"channel": name, "type": name.split(".", maxsplit=1)[0], "data": body})


def _msg_id(msg: Msg) -> str | None:
    return (msg.headers or {}).get(Header.MSG_ID)


def _concerned(report: dict[str, Any]) -> tuple[str, ...]:
    """The accounts an execution report concerns: a fill's two sides, any other report's owner."""
    if report.get("kind") == "fill":
        return tuple({report.get("taker_account", ""): None, report.get("maker_account", ""): None})
    return (report.get("account", ""),)


def _balance(msg: Msg) -> str:
    """A wallet event of the account's as decimal-string JSON."""
    body = msgpack.unpackb(msg.data, raw=False)
    asset = body.get("asset", "")
    with contextlib.suppress(Exception):
        body["amount"] = format_amount(asset, body["amount"])
    return _dumps({"channel": "balances", "type": "balance", "data": body})

