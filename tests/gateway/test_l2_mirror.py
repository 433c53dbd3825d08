"""The gateway's L2 mirror against the real book: snapshot + deltas = the book, and a gap is noticed."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.instruments import INSTRUMENTS
from gateway.l2 import L2Mirror
from nodes.matching.book import Book

SPEC = INSTRUMENTS["AAPL"]
MID = SPEC.reference_price


@st.composite
def commands(draw: st.DrawFn) -> list[tuple[str, Any, ...]]:
    """Random submits (both sides around the mid, some crossing) and cancels of earlier ids."""
    out: list[tuple[Any, ...]] = []
    for i in range(draw(st.integers(1, 120))):
        if out and draw(st.integers(0, 4)) == 0:
            out.append(("cancel", f"o{draw(st.integers(0, i - 1))}"))
        else:
            side = draw(st.sampled_from(["BUY", "SELL"]))
            price = MID + draw(st.integers(-15, 15))
            out.append(("new", f"o{i}", side, price, draw(st.integers(1, 5)) * SPEC.lot))
    return out


def feed(book: Book, seq: int, prev: int) -> dict[str, Any] | None:
    """What the engine publishes after applying up to `seq` (None when no level changed)."""
    deltas = book.drain_deltas()
    if not deltas:
        return None
    return {"seq": seq, "prev_seq": prev, "checksum": book.checksum(), "deltas": deltas}


def run(cmds: list[tuple[Any, ...]], snapshot_at: int, drop: int | None
        ) -> tuple[Book, L2Mirror, list[str], list[int]]:
    """Apply commands to a book, publishing a message every few; the mirror snapshots at one point."""
    book = Book.for_instrument(SPEC)
    mirror = L2Mirror()
    kinds: list[str] = []
    published: list[int] = []
    buffered: list[dict[str, Any]] = []
    prev = 0
    for seq, cmd in enumerate(cmds, start=1):
        if cmd[0] == "new":
            book.submit(cmd[1], "acct", cmd[2], "LIMIT", cmd[4], price=cmd[3])
        else:
            book.cancel(cmd[1])
        if seq % 3 == 0 or seq == len(cmds):
            message = feed(book, seq, prev)
            if message is not None:
                prev = seq
                published.append(seq)
                if seq == drop:
                    continue
                if mirror.loaded:
                    kinds.append(mirror.apply(message).kind)
                else:
                    buffered.append(message)
        if seq == snapshot_at:  # a snapshot reads the live book, undrained changes included
            bids, asks = book.depth(500)
            mirror.load(seq, bids, asks)
            for message in buffered:
                kinds.append(mirror.apply(message).kind)
    return book, mirror, kinds, published


@settings(max_examples=200, deadline=None)
@given(commands(), st.data())
def test_snapshot_plus_deltas_equals_the_book(cmds: list[tuple[Any, ...]], data: st.DataObject) -> None:
    snapshot_at = data.draw(st.integers(1, len(cmds)))
    book, mirror, kinds, _ = run(cmds, snapshot_at, drop=None)
    assert "gap" not in kinds
    assert mirror.depth() == book.depth(500)
    assert mirror.checksum() == book.checksum()


@settings(max_examples=200, deadline=None)
@given(commands(), st.data())
def test_a_lost_message_after_the_snapshot_is_a_gap(cmds: list[tuple[Any, ...]], data: st.DataObject) -> None:
    snapshot_at = data.draw(st.integers(1, len(cmds)))
    _, _, _, published = run(cmds, snapshot_at, drop=None)
    after = [seq for seq in published if seq > snapshot_at]
    if len(after) < 2:
        return  # a loss needs a later message to be noticed by
    drop = data.draw(st.sampled_from(after[:-1]))
    _, _, kinds, _ = run(cmds, snapshot_at, drop=drop)
    assert "gap" in kinds
