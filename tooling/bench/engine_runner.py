"""One engine, one process: `python -m tooling.bench.engine_runner ENGINE WORKLOAD MAX_OPS BUDGET_S [GC]`.

Three kinds of pass, each on a fresh book: batch-timed (throughput without per-op timing; stops at the
time budget; repeated up to REPEATS times while that fits in the budget, best kept),
per-op timed (perf_counter_ns around each op, on the ops the first pass got through) and an untimed
recording pass for the cross-check. Prints JSON lines: {"progress": n} while it runs, then {"result": ...}.
Imports only the standard library and the engine, so it runs in the peers' venv too.
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import islice
from typing import Any

from tooling.bench.engine_peers import ADAPTERS, Adapter

CHUNK = 1000
PROGRESS_S = 0.25
REPEATS = 5  # batch passes per engine at most (best kept), while they fit in the time budget


@contextmanager
def gc_quiet(policy: str) -> Iterator[None]:
    """The engine's GC policy around a timed loop: everything alive now is frozen out of the collector's
    reach and the cyclic collector is off (the book makes no cycles, so refcounting frees all it drops).
    `policy="default"` leaves CPython's collector as it is, to show what it costs."""
    if policy == "default":
        yield
        return
    gc.collect()
    gc.freeze()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.unfreeze()


def emit(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


def batch_pass(engine: type[Adapter], ops: list[list[int]], budget_s: float, policy: str
               ) -> tuple[int, float, float]:
    """Ops done, wall seconds, and this process's CPU seconds (which a noisy neighbour does not inflate)."""
    adapter = engine()
    calls = adapter.prepare(ops)
    it = iter(calls)
    done = 0
    with gc_quiet(policy):
        start = time.perf_counter()
        cpu = time.process_time()
        reported = 0.0
        while done < len(calls):
            for f, args in islice(it, CHUNK):
                f(*args)
            done = min(done + CHUNK, len(calls))
            elapsed = time.perf_counter() - start
            # Report progress a few times a second, not every chunk: each report is a write that wakes the
            # parent, and on a loaded box every wake-up is a chance to lose the CPU (timed as the engine's).
            if elapsed - reported >= PROGRESS_S:
                emit(progress=done, elapsed=round(elapsed, 3))
                reported = elapsed
            if elapsed > budget_s:
                break
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    emit(progress=done, elapsed=round(elapsed, 3))
    adapter.close()
    return done, elapsed, cpu


def timed_pass(engine: type[Adapter], ops: list[list[int]], policy: str) -> list[int]:
    adapter = engine()
    calls = adapter.prepare(ops)
    lat = [0] * len(calls)
    ns = time.perf_counter_ns
    i = 0
    with gc_quiet(policy):
        for f, args in calls:
            t = ns()
            f(*args)
            lat[i] = ns() - t
            i += 1
    adapter.close()
    return lat


def percentiles(lat: list[int]) -> dict[str, float]:
    """Nearest-rank percentiles in microseconds."""
    ordered = sorted(lat)
    n = len(ordered)

    def q(p: float) -> float:
        return ordered[max(0, min(n - 1, int(p * n + 0.5) - 1))] / 1000

    return {"p50": q(0.50), "p99": q(0.99), "p999": q(0.999), "p9999": q(0.9999), "max": ordered[-1] / 1000,
            "mean": sum(ordered) / n / 1000}


def main(argv: list[str]) -> None:
    name, workload, max_ops, budget_s = argv[0], argv[1], int(argv[2]), float(argv[3])
    policy = argv[4] if len(argv) > 4 else "quiet"
    engine = ADAPTERS[name]
    with open(workload) as f:
        ops = json.load(f)[:max_ops]
    done, batch_s, cpu_s = batch_pass(engine, ops, budget_s, policy)
    ops = ops[:done]
    repeats = 1
    while repeats < REPEATS and batch_s * (repeats + 1) < budget_s:  # best of several: robust to a noisy neighbour
        _, wall, cpu = batch_pass(engine, ops, budget_s, policy)
        batch_s, cpu_s = min(batch_s, wall), min(cpu_s, cpu)
        repeats += 1
    emit(phase="timed")
    lat = timed_pass(engine, ops, policy)
    emit(phase="verify")
    adapter = engine(record=True)
    for f, args in adapter.prepare(ops):
        f(*args)
    stats = adapter.stats()
    adapter.close()
    emit(result={"engine": name, "ops": done, "batch_s": batch_s, "rate": done / batch_s, "repeats": repeats,
                 "cpu_rate": done / cpu_s if cpu_s else None,
                 "timed_rate": done / (sum(lat) / 1e9), "latency_us": percentiles(lat), "stats": stats,
                 "python": sys.version.split()[0]})


if __name__ == "__main__":
    code = 0
    try:
        main(sys.argv[1:])
    except Exception as exc:  # report, then exit even if the engine left non-daemon threads behind
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        code = 1
    sys.stdout.flush()
    os._exit(code)
