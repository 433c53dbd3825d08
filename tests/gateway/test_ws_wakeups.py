"""How a book update reaches the parked senders, on the pure channel (no sockets): a chunk of them per
event-loop pass, the longest parked first, so an update arriving mid-pass is what the later chunks send;
no sender behind the book is ever left parked, and none is woken for nothing."""

from __future__ import annotations

import asyncio
import json

from gateway.ws_hub import WAKE_CHUNK, BookCursor, Channel, Subscriber
from tests.gateway.test_ws_spans import Feed, publish


def parked(channel: Channel, count: int) -> list[Subscriber]:
    """`count` subscribers that have the channel's current state and wait, in this order."""
    subs = [Subscriber(f"s{k}") for k in range(count)]
    for who in subs:
        who.books[channel.name] = BookCursor(channel)
        channel.subscribers.add(who)
        assert who.ready(), "the snapshot"
        channel.park(who)
    return subs


def woken(subs: list[Subscriber]) -> list[int]:
    return [k for k, who in enumerate(subs) if who.wake.is_set()]


async def one_pass() -> None:
    """Let the event loop run what is scheduled now (the channel's next chunk) and come back."""
    await asyncio.sleep(0)


async def test_an_update_wakes_a_chunk_per_pass_oldest_first_and_later_chunks_send_newer_updates() -> None:
    feed = Feed()
    channel = feed.channel()
    subs = parked(channel, 2 * WAKE_CHUNK + 3)
    publish(channel, feed, 1)
    first_seq = channel.seq
    assert woken(subs) == [], "nobody is woken inside the NATS callback: the loop runs between chunks"
    await one_pass()
    assert woken(subs) == list(range(WAKE_CHUNK))
    assert all(json.loads(f)["seq"] == first_seq for who in subs[:WAKE_CHUNK] for f in who.ready())
    publish(channel, feed, 1)  # arrives while the pass is under way
    await one_pass()
    assert woken(subs) == list(range(2 * WAKE_CHUNK))
    later = [json.loads(f) for who in subs[WAKE_CHUNK:2 * WAKE_CHUNK] for f in who.ready()]
    assert {(f["type"], f["prev_seq"], f["seq"]) for f in later} == {("update", first_seq - 1, channel.seq)}, (
        "a later chunk sends the newest state, one update spanning both")
    await one_pass()
    assert woken(subs) == list(range(len(subs)))
    await one_pass()
    assert not channel.idle and not channel._waking


async def test_the_pass_ends_at_the_first_sender_that_is_current() -> None:
    feed = Feed()
    channel = feed.channel()
    subs = parked(channel, WAKE_CHUNK + 2)
    publish(channel, feed, 1)
    for who in subs[:2]:  # served already (e.g. woken by a reply in their own queue): parked again, current
        who.ready()
        channel.park(who)
    for _ in range(3):
        await one_pass()
    assert woken(subs) == list(range(2, len(subs))), "every sender behind, and only those"
    assert list(channel.idle) == subs[:2] and not channel._waking


async def test_a_sender_parked_again_goes_behind_those_still_waiting() -> None:
    """Without the move to the back, a current sender at the head would end the pass with one behind it
    still parked, and that one would miss the book's last update until another came."""
    feed = Feed()
    channel = feed.channel()
    first, second = parked(channel, 2)
    publish(channel, feed, 1)
    first.ready()
    channel.park(first)
    await one_pass()
    assert second.wake.is_set() and not first.wake.is_set()


async def test_no_sender_is_woken_while_the_book_reloads_and_all_are_after() -> None:
    feed = Feed()
    channel = feed.channel()
    subs = parked(channel, WAKE_CHUNK + 1)
    publish(channel, feed, 1)
    assert channel.mirror is not None
    channel.mirror.loaded = False  # a gap: the hub is loading a snapshot
    await one_pass()
    assert woken(subs) == [] and not channel._waking, "nothing to send them yet, and no spinning"
    channel.mirror.loaded = True
    channel.reset(channel.mirror.seq)
    assert woken(subs) == list(range(len(subs)))
    assert all(json.loads(f)["type"] == "snapshot" for who in subs for f in who.ready())
