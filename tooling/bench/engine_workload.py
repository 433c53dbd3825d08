"""The engine benchmark's seeded workloads, and our book's results on them for the cross-check.

Standard: 60% limit orders within +-50 ticks of the mid (either side, so many cross), qty 1..100; 30%
cancels of a random resting order; 10% aggressive limits 100 ticks through the mid whose remainder
rests. Deep: the same, but passive orders stay on their own side of the mid, so the book grows (to ~40,000
orders over ~90 levels for 200,000 ops). Which orders rest depends on matching, so the generator drives
our book to pick cancel targets; every correct engine then sees only valid cancels.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nodes.matching.book import Book

MID = 10_000
CHUNK = 1000  # the runner reports progress (and may stop) at multiples of this


@dataclass(frozen=True)
class Workload:
    """A generated workload, its file, and our book's stats after every CHUNK ops (for any prefix)."""

    name: str
    ops: list[list[int]]
    path: Path
    checkpoints: dict[int, dict[str, Any]]
    resting: int
    levels: int


def generate(n: int, seed: int, deep: bool) -> tuple[list[list[int]], Book]:
    """The ops, and the book they leave behind."""
    rng = random.Random(seed)
    book = Book()
    live: list[int] = []
    where: dict[int, int] = {}
    ops: list[list[int]] = []
    oid = 0

    def gone(i: int) -> None:  # O(1) removal from the sampling list
        j = where.pop(i)
        last = live.pop()
        if last != i:
            live[j] = last
            where[last] = j

    for _ in range(n):
        roll = rng.random()
        if roll < 0.3 and live:
            target = live[rng.randrange(len(live))]
            book.cancel(target)
            gone(target)
            ops.append([1, target])
            continue
        oid += 1
        buy = rng.random() < 0.5
        qty = rng.randint(1, 100)
        if roll >= 0.9:
            price = MID + 100 if buy else MID - 100
        elif deep:
            price = MID - rng.randint(1, 50) if buy else MID + rng.randint(1, 50)
        else:
            price = MID + rng.randint(-50, 50)
        ops.append([0, oid, int(buy), price, qty])
        for e in book.submit(oid, "b" if buy else "s", "BUY" if buy else "SELL", "LIMIT", qty, price):
            if e[0] == "fill" and e[8] == 0:
                gone(e[4])
        if book.order(oid) is not None:
            where[oid] = len(live)
            live.append(oid)
    return ops, book


def reference(ops: list[list[int]]) -> tuple[dict[int, dict[str, Any]], Book]:
    """Our book's trades, traded qty, notional and top after every CHUNK ops and at the end; the final book."""
    book = Book()
    trades = qty = notional = 0
    out: dict[int, dict[str, Any]] = {}
    for i, op in enumerate(ops, 1):
        if op[0] == 0:
            events = book.submit(op[1], "b" if op[2] else "s", "BUY" if op[2] else "SELL", "LIMIT", op[4], op[3])
            for e in events:
                if e[0] == "fill":
                    trades += 1
                    qty += e[7]
                    notional += e[6] * e[7]
        else:
            book.cancel(op[1])
        if i % CHUNK == 0 or i == len(ops):
            bid, ask = book.best_bid(), book.best_ask()
            out[i] = {"trades": trades, "qty": qty, "notional": notional, "best_bid": bid[0] if bid else None,
                      "best_ask": ask[0] if ask else None, "checksum": book.checksum()}
    return out, book


def load(cache: Path, name: str, n: int, seed: int) -> Workload:
    """Generate (or reuse from `cache`) the named workload and compute our reference results."""
    deep = name == "deep"
    path = cache / f"workload-{name}-{n}-{seed}.json"
    if path.exists():
        ops = json.loads(path.read_text())
    else:
        ops, _ = generate(n, seed, deep)
        cache.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(ops, separators=(",", ":")))
        tmp.replace(path)
    checkpoints, book = reference(ops)
    bids, asks = book.depth(10**6)
    return Workload(name, ops, path, checkpoints, len(book), len(bids) + len(asks))
