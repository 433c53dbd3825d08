"""A gateway-side mirror of one instrument's L2 book, kept from a snapshot plus the engine's deltas.

Pure (no I/O): the WebSocket hub feeds it `matching.<instrument>.book` snapshots and `md.book.<instrument>`
messages. Each message carries absolute level totals, the journal sequence it reflects and the
previous message's sequence, so the mirror can tell a continuation from a gap, and its checksum
(CRC32 of the top 10 levels, as the engine computes it) proves the result.
"""

from __future__ import annotations

import zlib
from bisect import insort
from dataclasses import dataclass, field
from typing import Any, Literal

BUY = "BUY"


@dataclass(frozen=True)
class Applied:
    """What one feed message did: `update` (apply these levels), `stale` (already in), or `gap`."""

    kind: Literal["update", "stale", "gap"]
    seq: int = 0
    prev_seq: int = 0
    bids: list[tuple[int, int]] = field(default_factory=list)
    asks: list[tuple[int, int]] = field(default_factory=list)
    checksum: int = 0


class L2Mirror:
    """Levels per side (price -> total) at journal sequence `seq`; `loaded` once a snapshot arrived."""

    def __init__(self) -> None:
        self.seq = 0
        self.loaded = False
        self._bids: dict[int, int] = {}
        self._asks: dict[int, int] = {}
        self._bid_keys: list[int] = []  # negated prices: ascending = best first
        self._ask_keys: list[int] = []
        self._last_feed_seq = 0

    def load(self, seq: int, bids: list[tuple[int, int]], asks: list[tuple[int, int]]) -> None:
        """Replace everything with a snapshot taken at journal sequence `seq`."""
        self.seq, self.loaded = seq, True
        self._bids = dict(bids)
        self._asks = dict(asks)
        self._bid_keys = sorted(-p for p in self._bids)
        self._ask_keys = sorted(self._asks)
        self._last_feed_seq = 0

    def apply(self, message: dict[str, Any]) -> Applied:
        """Apply one `md.book` message; a message at or below the mirror's sequence is already in it.

        The first message after a snapshot may continue from an older message (its changes were
        drained after the snapshot): that is fine because levels are absolute totals. After that,
        each message must continue from the previous one, or the mirror missed one: a gap.
        """
        seq, prev = int(message["seq"]), int(message["prev_seq"])
        if seq <= self.seq:
            self._last_feed_seq = max(self._last_feed_seq, seq)
            return Applied("stale")
        if (self._last_feed_seq and prev != self._last_feed_seq) or (not self._last_feed_seq and prev > self.seq):
            return Applied("gap")
        bids: list[tuple[int, int]] = []
        asks: list[tuple[int, int]] = []
        for side, price, total in message["deltas"]:
            (bids if side == BUY else asks).append((price, total))
            self._set(side == BUY, price, total)
        previous, self.seq, self._last_feed_seq = self.seq, seq, seq
        checksum = self.checksum()
        if checksum != int(message["checksum"]):
            return Applied("gap")
        return Applied("update", seq, previous, bids, asks, checksum)

    def _set(self, bid: bool, price: int, total: int) -> None:
        levels, keys, key = (self._bids, self._bid_keys, -price) if bid else (self._asks, self._ask_keys, price)
        if total == 0:
            if levels.pop(price, None) is not None:
                keys.remove(key)
            return
        if price not in levels:
            insort(keys, key)
        levels[price] = total

    def depth(self, n: int | None = None) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
        """(bids best first, asks best first), all levels or the top `n`."""
        bid_keys = self._bid_keys if n is None else self._bid_keys[:n]
        ask_keys = self._ask_keys if n is None else self._ask_keys[:n]
        return [(-k, self._bids[-k]) for k in bid_keys], [(k, self._asks[k]) for k in ask_keys]

    def checksum(self) -> int:
        """CRC32 of the top 10 asks ascending then top 10 bids descending, `price``total` in units."""
        text = "".join([f"{k}{self._asks[k]}" for k in self._ask_keys[:10]]
                       + [f"{-k}{self._bids[-k]}" for k in self._bid_keys[:10]])
        return zlib.crc32(text.encode("ascii"))
