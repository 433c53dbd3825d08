"""Latency samples, percentiles and the number formats every bench table uses."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """One measured run: successes, failures, wall seconds and latency percentiles (seconds)."""

    label: str
    ok: int
    errors: int
    seconds: float
    p50: float | None = None
    p99: float | None = None
    p999: float | None = None
    windows: tuple[Window, ...] = ()
    """An open loop's run cut by schedule time (`by_window`): whether its tail is steady or a few stalls."""

    @property
    def rate(self) -> float:
        """Successful operations per second."""
        return self.ok / self.seconds if self.seconds > 0 else 0.0


@dataclass(frozen=True)
class Window:
    """The operations scheduled in one slice of an open loop: how many succeeded and their latency spread."""

    start_s: float
    """Slice start, seconds after the measured schedule began."""
    end_s: float
    ok: int
    p50: float | None
    p99: float | None
    worst: float | None


def by_window(samples: list[tuple[float, float]], width_s: float) -> tuple[Window, ...]:
    """(scheduled offset s, latency s) samples grouped by `width_s` slices of schedule time, in order."""
    slices: dict[int, list[float]] = {}
    for offset, latency in samples:
        slices.setdefault(int(offset // width_s), []).append(latency)
    out = []
    for k in sorted(slices):
        ordered = sorted(slices[k])
        out.append(Window(k * width_s, (k + 1) * width_s, len(ordered), percentile(ordered, 0.50),
                          percentile(ordered, 0.99), ordered[-1]))
    return tuple(out)


def percentile(ordered: list[float], q: float) -> float | None:
    """The `q` quantile (0..1) of an already sorted list, nearest-rank; None when empty."""
    if not ordered:
        return None
    rank = max(0, min(len(ordered) - 1, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


def summarize(label: str, latencies: list[float], errors: int, seconds: float) -> Run:
    """A `Run` from raw latency samples (one per successful operation)."""
    ordered = sorted(latencies)
    return Run(label, len(ordered), errors, seconds, percentile(ordered, 0.50),
               percentile(ordered, 0.99), percentile(ordered, 0.999))


def merged(label: str, runs: list[Run]) -> Run:
    """Runs of one load measured in several slices as one: their counts and seconds summed (the rate over them
    all); no percentiles, which cannot be merged from percentiles."""
    return Run(label, sum(r.ok for r in runs), sum(r.errors for r in runs), sum(r.seconds for r in runs))


def rate_only(label: str, count: int, seconds: float) -> Run:
    """A `Run` with a count and no latency samples."""
    return Run(label, count, 0, seconds)


def fmt_rate(value: float | None, unit: str = "/s") -> str:
    """`12,345/s`, or a dash."""
    return "-" if value is None else f"{value:,.0f}{unit}"


def fmt_ms(seconds: float | None) -> str:
    """Milliseconds with precision that suits sub-millisecond values, or a dash."""
    if seconds is None:
        return "-"
    ms = seconds * 1000
    return f"{ms:.3f} ms" if ms < 1 else f"{ms:.2f} ms" if ms < 100 else f"{ms:,.0f} ms"


def fmt_s(seconds: float | None) -> str:
    """Seconds with three decimals, or a dash."""
    return "-" if seconds is None else f"{seconds:.3f} s"


def ratio(ours: float | None, peer: float | None) -> str:
    """`ours / peer` as `0.42x`, or a dash when either side is missing."""
    if ours is None or peer is None or peer == 0:
        return "-"
    return f"{ours / peer:.2f}x"


def status(met: bool) -> str:
    """The table word for a target: met, or a loud miss."""
    return "met" if met else "**MISSED**"
