"""`qt bench engine`'s report: targets judge the installed build, the pure-Python row the pure target."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from rich.console import Console

from tooling.bench.engine_report import Row, render
from tooling.bench.engine_workload import Workload


def row(key: str, label: str, rate: float, cpu_rate: float, pure: bool) -> Row:
    lat = {"p50": 1.0, "p99": 2.0, "p999": 3.0, "p9999": 4.0, "max": 5.0, "mean": 1.0}
    result: dict[str, Any] = {"rate": rate, "cpu_rate": cpu_rate, "ops": 1000, "latency_us": lat}
    return Row(label, key, pure, "", result, "agrees", True)


def test_targets_use_the_installed_build_and_ratios_come_per_wall_and_cpu_second() -> None:
    rows = {"deep": [row("ours", "ours (compiled, as installed)", 700_000, 1_400_000, False),
                     row("ours-python", "ours (pure Python, same source)", 300_000, 600_000, True),
                     row("lightmatchingengine", "lme", 100_000, 200_000, True),
                     row("limit-order-book", "lob", 800_000, 1_000_000, False)]}
    workloads = {"deep": Workload("deep", [[0]] * 1000, Path("unused"), {}, 0, 0)}
    report = render(Console(file=io.StringIO()), rows, workloads, 1000)
    met = {t.name: (t.value, t.met) for t in report.targets}
    assert met["deep: pure Python >= 2x every pure-Python peer"] == ("3.00x", True)
    assert met["deep: ops/s, all features on (ours (compiled, as installed))"] == ("700,000", True)
    assert met["deep: ahead of every peer, compiled included"] == ("0.88x", False)
    lob = report.tables["deep"][3]
    assert (lob[4], lob[5], lob[6]) == ("0.88x", "1,000,000", "1.40x")  # wall ratio, CPU rate, CPU ratio
