"""`qt bench engine`: our book (nodes/matching/book.py, as installed: mypyc-compiled, and as pure Python)
against the published order books.

Each engine runs in its own process on the identical seeded workload (generated once, passed by file),
with a time budget per pass and a hard timeout (a hung engine is killed by PID and reported as hung).
Results are cross-checked against our book on the same ops and written to BENCHMARKS.md.
Run `python -m tooling.bench.engine --help`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from nodes.matching import BOOK_BUILD
from nodes.matching.book_build import PURE_ENV
from tooling.bench.engine_report import Row, profile_ours, render, write_results
from tooling.bench.engine_venv import ensure_peers
from tooling.bench.engine_workload import Workload, load
from tooling.bench.report import BENCHMARKS_MD, WriteOption

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "data" / "bench" / "engine"
RESULTS_MD = BENCHMARKS_MD


@dataclass
class Plan:
    """How big and how long: ops per workload, seconds per pass, and the hard timeout per engine process."""

    ops: int
    seed: int
    budget_s: float
    timeout_s: float
    engines: list[str] = field(default_factory=list)


def run_engine(python: Path, name: str, workload: Workload, plan: Plan, policy: str = "quiet",
               extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    """One engine in its own process; a result dict, or {"error"/"hung": ...} with the last progress seen."""
    env = {**os.environ, **(extra_env or {})}
    env["PYTHONPATH"] = str(REPO)
    cmd = [str(python), "-m", "tooling.bench.engine_runner", name, str(workload.path), str(plan.ops),
           str(plan.budget_s), policy]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)
    try:
        out, err = proc.communicate(timeout=plan.timeout_s)
        hung = False
    except subprocess.TimeoutExpired:
        proc.kill()  # by PID: this process only
        out, err = proc.communicate()
        hung = True
    lines = [json.loads(ln) for ln in out.splitlines() if ln.startswith("{")]
    progress = max((ln["progress"] for ln in lines if "progress" in ln), default=0)
    phase = next((ln["phase"] for ln in reversed(lines) if "phase" in ln), "batch")
    result = next((ln["result"] for ln in lines if "result" in ln), None)
    if result is not None:
        return result
    if hung:
        return {"engine": name, "hung": f"killed after {plan.timeout_s:.0f} s in its {phase} pass "
                                        f"(last progress: {progress:,} ops)"}
    tail = [ln for ln in err.strip().splitlines() if ln.strip()][-1:] or [f"exit {proc.returncode}"]
    return {"engine": name, "error": f"{phase} pass, after {progress:,} ops: {tail[0][:200]}"}


def cross_check(result: dict[str, Any], workload: Workload) -> tuple[str, bool | None]:
    """Compare trades, traded qty, notional and final best bid/ask with ours on the same ops."""
    ref = workload.checkpoints.get(result["ops"])
    if ref is None:
        return "no reference for that prefix", None
    stats = result["stats"]
    diffs, compared = [], []
    for key in ("trades", "qty", "notional", "best_bid", "best_ask"):
        if stats.get(key) is None and key in ("trades", "qty", "notional"):
            continue  # the engine does not report it
        compared.append(key)
        if stats.get(key) != ref[key]:
            diffs.append(f"{key} {stats.get(key)} vs ours {ref[key]}")
    if diffs:
        return "DISAGREES: " + "; ".join(diffs), False
    skipped = {"trades", "qty", "notional"} - set(compared)
    return "agrees" + (f" (no {'/'.join(sorted(skipped))} reported)" if skipped else ""), True


def engine(
    quick: Annotated[bool, typer.Option(help="~1 minute smoke: 10,000 ops, short budgets, no installs.")] = False,
    ops: Annotated[int | None, typer.Option(help="Operations per workload (default 200,000).")] = None,
    seed: Annotated[int, typer.Option(help="Workload seed.")] = 42,
    budget: Annotated[float | None, typer.Option(help="Seconds per timed pass before a slow engine stops early.")]
    = None,
    only: Annotated[str, typer.Option(help="Comma-separated engines to run (default: all).")] = "",
    install: Annotated[bool | None, typer.Option("--install/--no-install",
                                                 help="Install missing peers (default: yes unless --quick).")] = None,
    write: WriteOption = False,
    out: Annotated[Path, typer.Option(help="Markdown file to write.")] = RESULTS_MD,
) -> None:
    """Engine core in-process: orders/s and per-order latency, ours vs each published Python order book."""
    console = Console(width=max(Console().width, 180))
    started = time.monotonic()
    n = ops or (10_000 if quick else 200_000)
    budget_s = budget or (1.0 if quick else 12.0)
    plan = Plan(ops=n, seed=seed, budget_s=budget_s, timeout_s=10.0 if quick else budget_s * 4 + 15)
    chosen = {s.strip() for s in only.split(",") if s.strip()}

    def want(key: str) -> bool:
        return not chosen or key in chosen

    console.print(f"[bold]qt bench engine[/bold]: {n:,} ops per workload, seed {seed}, "
                  f"{budget_s:.1f} s budget per pass, {plan.timeout_s:.0f} s timeout per engine")
    python, installed = ensure_peers(CACHE, install if install is not None else not quick, want)
    build_note = f"Our book as installed: {BOOK_BUILD.kind} ({BOOK_BUILD.reason})"
    console.print(f"[dim]{build_note}[/dim]")
    rows: dict[str, list[Row]] = {}
    workloads = {}
    for name in ("standard", "deep"):
        workload = load(CACHE, name, n, seed)
        workloads[name] = workload
        console.print(f"[bold]{name}[/bold]: {len(workload.ops):,} ops; our book ends with {workload.resting:,} "
                      f"resting orders on {workload.levels} levels, "
                      f"{workload.checkpoints[len(workload.ops)]['trades']:,} trades")
        table: list[Row] = []
        jobs: list[tuple[str, str, Path, str, dict[str, str] | None, bool | None, str]] = [
            ("ours", f"ours ({BOOK_BUILD.kind}, as installed)", Path(sys.executable), "quiet", None,
             BOOK_BUILD.kind == "python", ""),
            ("ours-python", "ours (pure Python, same source)", Path(sys.executable), "quiet", {PURE_ENV: "1"}, True,
             f"{PURE_ENV}=1"),
        ]
        if not quick:
            jobs.append(("ours", "ours, CPython default GC", Path(sys.executable), "default", None,
                         BOOK_BUILD.kind == "python",
                         "no freeze/disable: what the engine must avoid"))
        jobs.append(("bare", "bare dict+deque+bisect (no features)", Path(sys.executable), "quiet", None, True,
                     "baseline"))
        for inst in installed:
            if inst.version is not None:
                kind = "pure Python" if inst.peer.pure else inst.peer.note
                jobs.append((inst.peer.key, f"{inst.peer.key} {inst.version}", python, "quiet", None,
                             inst.peer.pure, kind))
        for key, label, interpreter, policy, extra_env, pure, note in jobs:
            if not want(key):
                continue
            console.print(f"  {label} ...", end=" ")
            result = run_engine(interpreter, key, workload, plan, policy, extra_env)
            check = cross_check(result, workload) if "stats" in result else ("-", None)
            row = Row(label, key, pure, note, result, check[0], check[1])
            table.append(row)
            console.print(row.summary())
        for inst in installed:
            if inst.version is None and want(inst.peer.key):
                table.append(Row(inst.peer.key, inst.peer.key, inst.peer.pure, inst.peer.note,
                                 {"error": f"not installed: {inst.error}"}, "-", None))
        rows[name] = table
    profile = None
    report = render(console, rows, workloads, plan.ops)
    if not report.all_met:
        profile = profile_ours(workloads["standard"])
        console.print(profile)
    elapsed = time.monotonic() - started
    console.print(f"[dim]total {elapsed:.0f} s[/dim]")
    if write:
        write_results(out, report, profile, build_note, plan.ops, seed, elapsed)
        console.print(f"wrote {out}")


def main() -> None:
    """`python -m tooling.bench.engine`."""
    app = typer.Typer(add_completion=False)
    app.command()(engine)
    app()


if __name__ == "__main__":
    main()
