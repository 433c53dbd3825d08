"""Turn a pstats file into tables: top functions by own time and by cumulative time, with a summary."""

from __future__ import annotations

import pstats
from collections import defaultdict
from pathlib import Path

from tooling.bench.report import Section
from tooling.natsserver import REPO_ROOT

FuncKey = tuple[str, int, str]
#: Own time that is waiting (a lock, a queue, the event loop's poll) or start-up, not work under load.
#: uvloop's loop is Cython: its C time (socket I/O and idle alike) shows up as `asyncio.Runner.run`.
WAITING = ("acquire' of '_thread", "run_until_complete", "run_forever", "'select' of", "'poll' of",
           "time.sleep", "'get' of '_queue", "'wait' of", "_worker", "'control' of", "<module>",
           "builtins.exec", "builtins.compile", "marshal.loads")
EVENT_LOOP = "asyncio/runners.py"
CATEGORIES = (
    ("SQLite calls (sqlite3 C; includes fsync waits)", ("sqlite3",)),
    ("pydantic validation/serialisation", ("pydantic",)),
    ("hashing + JSON (request_hash, event_hash)", ("hashlib", "sha256", "hexdigest", "/json/")),
    ("msgpack", ("msgpack",)),
    ("nats-py client", ("/nats/",)),
    ("OpenTelemetry", ("opentelemetry",)),
    ("asyncio / uvloop / threads", ("asyncio", "uvloop", "concurrent/futures", "threading", "contextvars")),
    ("wallet + contracts + runtime code", (f"{REPO_ROOT}/nodes", f"{REPO_ROOT}/contracts")),
)


def name(key: FuncKey) -> str:
    """A short readable name: `nodes/wallet/store.py:120(_append)` or the builtin's description."""
    file, line, func = key
    if file == "~":
        return func.replace("<", "").replace(">", "")
    for marker in (f"{REPO_ROOT}/", "site-packages/", "/lib/python3.11/", "/lib/python3.12/"):
        if marker in file:
            file = file.split(marker, 1)[1]
            break
    return f"{file}:{line}({func})"


def category(key: FuncKey) -> str | None:
    """Which bucket a function's own time belongs to; None for waiting."""
    text = f"{key[0]} {key[2]}"
    if any(w in key[2] for w in WAITING) or (key[0].endswith(EVENT_LOOP) and key[2] == "run"):
        return None
    for label, needles in CATEGORIES:
        if any(n in text for n in needles):
            return label
    return "other (stdlib, logging, ...)"


def profile_sections(path: Path, title: str, load_s: float, *, top: int = 15) -> list[Section]:
    """Own-time and cumulative tables of a profile taken over `load_s` seconds of load."""
    raw = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    rows: list[tuple[FuncKey, int, float, float]] = [(k, v[1], v[2], v[3]) for k, v in raw.items()]
    busy = [r for r in rows if category(r[0]) is not None]
    total_own = sum(r[2] for r in busy) or 1e-9
    own = Section(f"{title}: top {top} by own time (waits excluded)",
                  ["function", "calls", "own s", "% of own", "cum s"])
    for key, calls, tt, ct in sorted(busy, key=lambda r: -r[2])[:top]:
        own.add(name(key), f"{calls:,}", f"{tt:.3f}", f"{tt / total_own:.1%}", f"{ct:.3f}")
    cum = Section(f"{title}: top {top} project functions by cumulative time",
                  ["function", "calls", "cum s", "% of load wall", "own s"])
    ours = [r for r in rows if r[0][0].startswith(str(REPO_ROOT)) and "/tooling/" not in r[0][0]
            and r[0][2] != "<module>" and not (r[1] == 1 and r[3] >= 0.9 * load_s)]  # not the process's wrappers
    for key, calls, tt, ct in sorted(ours, key=lambda r: -r[3])[:top]:
        cum.add(name(key), f"{calls:,}", f"{ct:.3f}", f"{ct / load_s:.0%}", f"{tt:.3f}")
    buckets: dict[str, float] = defaultdict(float)
    for key, _, tt, _ in busy:
        buckets[category(key) or ""] += tt
    split = ", ".join(f"{label} {secs / total_own:.0%}"
                      for label, secs in sorted(buckets.items(), key=lambda kv: -kv[1])[:6])
    own.notes.append(f"Own time by area ({total_own:.2f} s profiled, all threads): {split}.")
    loop_s = sum(r[2] for r in rows if r[0][0].endswith(EVENT_LOOP) and r[0][2] == "run")
    if loop_s:
        own.notes.append(f"Not in the table: {loop_s:.2f} s inside uvloop's own C code (socket I/O, "
                         "callback dispatch and idle time cannot be told apart by cProfile).")
    execute = [r for r in rows if "'execute' of 'sqlite3.Cursor'" in r[0][2]]
    if execute and execute[0][1]:
        _, calls, tt, _ = execute[0]
        own.notes.append(f"sqlite3 Cursor.execute: {calls:,} calls, {tt / calls * 1e6:,.0f} µs each on average "
                         "(SQLite work and the COMMIT's fsync, the event loop waiting meanwhile).")
    writer = [r for r in rows if r[0][2] == "execute_batch" and r[0][0].endswith("nodes/wallet/store.py")]
    if writer:
        key, calls, _, ct = writer[0]
        own.notes.append(
            f"EventStore.execute_batch: {calls:,} batches, {ct:.2f} s cumulative = "
            f"{ct / load_s:.0%} of the {load_s:.1f} s under load (the event loop's share spent committing).")
    return [own, cum]
