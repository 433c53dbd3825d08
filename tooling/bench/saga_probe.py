"""What a `qt bench saga` point is judged by: clearing's metrics, every endpoint's request count, TRADES' length
and CPU, read over NATS and /proc before and after the point, and their difference per saga."""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field

from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from contracts.clearing import STEPS
from contracts.subjects import CLEARING_EXEC_CONSUMER, EXEC_STREAM, TRADES_STREAM, clearing_subject
from mesh.rpc import discover
from tooling.bench.mesh import machine_busy_seconds, rss_kb, tree_cpu_seconds

SERVICES = ("wallet", "matching")
"""Whose requests are clearing's round trips (their `$SRV.STATS` deltas)."""

Sample = tuple[str, tuple[tuple[str, str], ...]]


@dataclass(frozen=True)
class Snapshot:
    """What a point is judged by, read at one moment."""

    metrics: str
    """clearing's Prometheus text."""
    calls: dict[str, int]
    """`<service>.<endpoint>` -> requests served since the instance started (`$SRV.STATS`)."""
    trades: int
    """Messages TRADES ever stored (its last sequence, as in `stored`)."""
    exec_delivered: int
    """EXEC messages delivered to clearing's EXEC worker (its durable consumer's sequence)."""
    stored: dict[str, int]
    """Stream -> its last sequence: every message it ever stored (a KV bucket's replaced values included)."""
    cpu: dict[str, float]
    """CPU seconds of each of our processes."""
    busy: float
    """Non-idle CPU seconds of the whole machine."""
    at: float


@dataclass(frozen=True)
class Timing:
    """A latency histogram's difference over a point: observations, their sum and estimated quantiles."""

    count: float
    total: float
    p50: float | None
    p99: float | None

    @property
    def mean(self) -> float | None:
        """Mean seconds per observation."""
        return self.total / self.count if self.count else None


@dataclass
class PointStats:
    """One point's counters, per saga the clearing node finished in it (warm-up included)."""

    sagas: float
    steps: dict[str, Timing]
    saga: Timing
    """`qt_saga_seconds{status="completed"}`: creation to final record."""
    handler: Timing
    """`qt_request_seconds{endpoint="place_order"}`: decode to reply."""
    kv_writes: float
    calls: dict[str, float]
    trades: float
    exec_reports: float
    """EXEC messages clearing's release worker fetched and acked: off the saga's path, not in `round_trips`."""
    cpu_us: dict[str, float]
    cores: dict[str, float]
    others: float
    stored: dict[str, float] = field(default_factory=dict)
    """Stream -> messages it stored per saga (each an fsynced write under `sync_interval: always`)."""

    @property
    def round_trips(self) -> float:
        """Requests to wallet and matching, TRADES publishes and KV writes, per saga."""
        return sum(self.calls.values()) + self.trades + self.kv_writes


@dataclass(frozen=True)
class Mark:
    """The sagas clearing had finished and every process's CPU seconds, at one moment of a load."""

    sagas: float
    cpu: dict[str, float]
    busy: float
    at: float


@dataclass(frozen=True)
class CpuWindow:
    """CPU per saga of each process over a point's measured window (warm-up excluded)."""

    sagas: float
    seconds: float
    cpu_s: dict[str, float]
    """Process name -> CPU seconds it used in the window (its descendants included)."""
    others: float
    """Cores the rest of the machine used meanwhile."""

    def us(self, name: str) -> float:
        """CPU µs per saga of one process."""
        return self.cpu_s.get(name, 0.0) / self.sagas * 1e6 if self.sagas else 0.0

    def total_us(self, names: tuple[str, ...]) -> float:
        """CPU µs per saga of several processes together."""
        return sum(self.us(name) for name in names)

    def cores(self, name: str) -> float:
        """Cores one process used on average over the window."""
        return self.cpu_s.get(name, 0.0) / self.seconds if self.seconds else 0.0


def cpu_window(start: Mark, end: Mark) -> CpuWindow:
    """What each process spent between two marks, and the sagas finished between them."""
    used = {name: end.cpu.get(name, 0.0) - start.cpu.get(name, 0.0) for name in end.cpu}
    wall = max(end.at - start.at, 1e-9)
    return CpuWindow(sagas=end.sagas - start.sagas, seconds=wall, cpu_s=used,
                     others=max(0.0, end.busy - start.busy - sum(used.values())) / wall)


class Probe:
    """Snapshots of everything a point is judged by: clearing's metrics, every endpoint's request count,
    TRADES' length and the CPU of our processes and of the machine."""

    def __init__(self, nc: Client, pids: dict[str, int]) -> None:
        self.nc = nc
        self.pids = pids

    async def before(self) -> Snapshot:
        """Counters first, CPU last (as close to the load as possible)."""
        counters = await self._counters()
        return Snapshot(*counters, cpu=self._cpu(), busy=machine_busy_seconds(), at=time.perf_counter())

    async def after(self) -> Snapshot:
        """CPU first, counters last."""
        cpu, busy, at = self._cpu(), machine_busy_seconds(), time.perf_counter()
        return Snapshot(*await self._counters(), cpu=cpu, busy=busy, at=at)

    async def mark(self) -> Mark:
        """Clearing's finished-saga count, then the CPU of every process (and its descendants) at once after."""
        metrics = (await self.nc.request(clearing_subject("metrics"), b"", timeout=10)).data.decode()
        sagas = sum(v for (name, _), v in samples(metrics).items() if name == "qt_saga_seconds_count")
        return Mark(sagas, tree_cpu_seconds(self.pids), machine_busy_seconds(), time.perf_counter())

    def _cpu(self) -> dict[str, float]:
        return tree_cpu_seconds(self.pids)

    def resident_kb(self) -> dict[str, int]:
        """VmRSS (kB) of each node and the server, at this moment (the bench client left out)."""
        return {name: rss_kb(pid) for name, pid in self.pids.items() if name != "client"}

    async def _counters(self) -> tuple[str, dict[str, int], int, int, dict[str, int]]:
        metrics = (await self.nc.request(clearing_subject("metrics"), b"", timeout=10)).data.decode()
        calls: dict[str, int] = Counter()
        for instance in await discover(self.nc, wait_s=0.3):
            stats = instance.get("stats") or {}
            for endpoint in stats.get("endpoints") or []:
                calls[f"{stats.get('name')}.{endpoint.get('name')}"] += int(endpoint.get("num_requests") or 0)
        js = self.nc.jetstream()
        delivered = (await js.consumer_info(EXEC_STREAM, CLEARING_EXEC_CONSUMER)).delivered
        stored = {info.config.name or "": info.state.last_seq for info in await js.streams_info()}
        exec_delivered = (delivered.consumer_seq if delivered else 0) or 0
        return metrics, dict(calls), stored.get(TRADES_STREAM, 0), exec_delivered, stored


def samples(text: str) -> dict[Sample, float]:
    """Prometheus text as {(sample name, sorted labels): value}."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def timing(delta: dict[Sample, float], metric: str, label: str, value: str) -> Timing:
    """One labelled histogram's difference: count, sum, and p50/p99 interpolated within its buckets."""
    buckets = sorted((float(dict(labels)["le"]), v) for (name, labels), v in delta.items()
                     if name == f"{metric}_bucket" and dict(labels).get(label) == value)
    key = ((label, value),)
    return Timing(delta.get((f"{metric}_count", key), 0.0), delta.get((f"{metric}_sum", key), 0.0),
                  quantile(buckets, 0.50), quantile(buckets, 0.99))


def quantile(buckets: list[tuple[float, float]], q: float) -> float | None:
    """The q quantile of cumulative (upper bound, count) buckets, linear within the bucket it falls in."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    rank = q * buckets[-1][1]
    low, below = 0.0, 0.0
    for upper, cumulative in buckets:
        if cumulative >= rank:
            if math.isinf(upper):
                return low  # above the last finite bucket: its bound is all we know
            return low + (upper - low) * (rank - below) / (cumulative - below) if cumulative > below else upper
        low, below = upper, cumulative
    return low


def point_stats(before: Snapshot, after: Snapshot) -> PointStats:
    """The difference of two snapshots, per saga clearing finished in between."""
    old, new = samples(before.metrics), samples(after.metrics)
    delta = {key: value - old.get(key, 0.0) for key, value in new.items()}
    sagas = sum(v for (name, _), v in delta.items() if name == "qt_saga_seconds_count") or 1.0
    calls = {name: (after.calls.get(name, 0) - before.calls.get(name, 0)) / sagas for name in after.calls
             if name.split(".", 1)[0] in SERVICES and after.calls.get(name, 0) > before.calls.get(name, 0)}
    wall = max(after.at - before.at, 1e-9)
    used = {name: after.cpu.get(name, 0.0) - before.cpu.get(name, 0.0) for name in after.cpu}
    return PointStats(
        sagas=sagas, steps={step: timing(delta, "qt_saga_step_seconds", "step", step) for step in STEPS},
        saga=timing(delta, "qt_saga_seconds", "status", "completed"),
        handler=timing(delta, "qt_request_seconds", "endpoint", "place_order"),
        kv_writes=delta.get(("qt_saga_kv_writes_total", ()), 0.0) / sagas, calls=calls,
        trades=(after.trades - before.trades) / sagas,
        exec_reports=(after.exec_delivered - before.exec_delivered) / sagas,
        cpu_us={name: seconds / sagas * 1e6 for name, seconds in used.items()},
        cores={name: seconds / wall for name, seconds in used.items()},
        others=max(0.0, after.busy - before.busy - sum(used.values())) / wall,
        stored={name: (seq - before.stored.get(name, 0)) / sagas for name, seq in after.stored.items()
                if seq > before.stored.get(name, 0)},
    )
