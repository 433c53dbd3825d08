"""`qt bench gateway`: the overhead and HTTP share targets are judged on the interleaved measures when present."""

from __future__ import annotations

import asyncio

import pytest

from tooling.bench.gateway_http import Send, interleaved
from tooling.bench.gateway_reasons import why
from tooling.bench.gateway_tables import Read, Results, sections, targets
from tooling.bench.gateway_ws import Usage
from tooling.bench.saga_probe import PointStats, Timing
from tooling.bench.stats import Run, merged


def _results(*, paired: bool, sliced: bool) -> Results:
    res = Results(rate=1000.0, subscribers=500, ws_procs=2, compression=False)
    res.runs = {"nats 1": Run("nats 1", 100, 0, 1.0, p50=0.0050), "http 1": Run("http 1", 80, 0, 1.0, p50=0.0085),
                "nats 64": Run("nats 64", 1000, 0, 1.0, p50=0.060), "http 64": Run("http 64", 650, 0, 1.0, p50=0.090)}
    if paired:
        res.paired = {"nats": Run("paired nats", 50, 0, 1.0, p50=0.0050, p99=0.009),
                      "http": Run("paired http", 50, 0, 1.0, p50=0.0065, p99=0.012)}
    if sliced:
        res.sliced = {"nats": merged("sliced nats 64", [Run("a", 500, 0, 1.0), Run("b", 400, 0, 1.0)]),
                      "http": merged("sliced http 64", [Run("a", 330, 1, 1.0), Run("b", 300, 0, 1.0)])}
    return res


def _target(res: Results, prefix: str) -> tuple[bool, str]:
    found = next(t for t in targets(res) if t.name.startswith(prefix))
    return found.met, found.ours


def test_the_overhead_is_judged_on_the_interleaved_pairs_and_the_points_are_shown_beside() -> None:
    met, ours = _target(_results(paired=True, sliced=False), "gateway overhead")
    assert met  # 6.5 - 5.0 = 1.5 ms interleaved, though the points one after the other differ by 3.5 ms
    assert ours.startswith("1.50 ms (HTTP 6.50 ms vs NATS 5.00 ms, paths interleaved pair by pair; 3.50 ms between")


def test_without_interleaved_pairs_the_points_are_judged() -> None:
    met, ours = _target(_results(paired=False, sliced=False), "gateway overhead")
    assert not met
    assert ours.startswith("3.50 ms (HTTP 8.50 ms vs NATS 5.00 ms, one point after the other")


def test_the_http_share_is_judged_on_the_slices_summed() -> None:
    met, ours = _target(_results(paired=False, sliced=True), "HTTP place-order")
    assert met  # 630 / 900 = 0.70x over the slices; the points alone give 0.65x
    assert ours.startswith("0.70x (315/s vs 450/s, closed loops in alternating slices; 0.65x between")
    met, _ = _target(_results(paired=False, sliced=False), "HTTP place-order")
    assert not met


def test_the_judged_table_appears_only_with_interleaved_measures() -> None:
    titles = [s.title for s in sections(_results(paired=True, sliced=True))]
    assert "Judged figures: both paths measured in the same minutes" in titles
    titles = [s.title for s in sections(_results(paired=False, sliced=False))]
    assert not any(t.startswith("Judged figures") for t in titles)


def test_merged_slices_sum_their_counts_and_seconds() -> None:
    run = merged("x", [Run("a", 10, 1, 2.0, p50=0.1), Run("b", 30, 2, 2.0)])
    assert (run.ok, run.errors, run.seconds, run.rate, run.p50) == (40, 3, 4.0, 10.0, None)


def test_interleaving_sends_pairs_down_each_path_in_turn_each_with_its_own_count() -> None:
    calls: list[tuple[str, int]] = []

    def path(name: str) -> Send:
        async def send(c: int, i: int) -> bool:
            calls.append((name, i))
            await asyncio.sleep(0.001)
            return name == "nats" or i % 3 != 0  # every third HTTP request fails

        return send

    runs = asyncio.run(interleaved({"nats": path("nats"), "http": path("http")}, duration_s=0.1, warmup_s=0.0))
    assert calls[:6] == [("nats", 0), ("nats", 1), ("http", 0), ("http", 1), ("nats", 2), ("nats", 3)]
    http = [i for name, i in calls if name == "http"]
    assert http == list(range(len(http)))
    assert runs["http"].errors == sum(1 for i in http if i % 3 == 0)
    assert runs["nats"].ok == sum(1 for name, _ in calls if name == "nats")
    assert runs["nats"].p50 == pytest.approx(0.001, abs=0.05)


def _point(gateway_us: float) -> PointStats:
    idle = Timing(0.0, 0.0, None, None)
    return PointStats(sagas=100.0, steps={}, saga=idle, handler=idle, kv_writes=2.0, calls={}, trades=0.5,
                      exec_reports=0.0, cpu_us={"gateway": gateway_us, "clearing": 400.0}, cores={"gateway": 0.3},
                      others=0.0)


def test_the_reasons_of_a_run_without_a_1_client_point_judge_no_overhead() -> None:
    res = Results(rate=1000.0, subscribers=500, ws_procs=2, compression=False)
    res.runs = {"nats 16": Run("nats 16", 700, 0, 1.0, p50=0.020), "http 16": Run("http 16", 500, 0, 1.0, p50=0.028),
                "nats 64": Run("nats 64", 1000, 0, 1.0, p50=0.060), "http 64": Run("http 64", 650, 0, 1.0, p50=0.090)}
    res.points = {label: _point(0.0 if label.startswith("nats") else 500.0) for label in res.runs}
    usage = Usage({"gateway": 0.5}, 0.0, 1.0)
    res.reads = [Read("GET /health", server, 64, Run("GET /health", 1000, 0, 1.0), usage)
                 for server in ("gateway", "bare FastAPI peer")]
    text = why(res)
    assert text is not None and "with 16 clients the gateway adds 8.00 ms at p50" in text
    assert "2 ms target" not in text  # the overhead target is judged at 1 client, which this run did not measure
