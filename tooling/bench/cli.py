"""`qt bench ...`: benchmarks on loopback with their own servers and nodes; printed, `--write` into BENCHMARKS.md."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer
from rich.console import Console

from tooling.bench.engine import engine
from tooling.bench.gateway import gateway
from tooling.bench.harness import client_counts
from tooling.bench.matching import matching
from tooling.bench.report import BENCHMARKS_MD, SECTIONS, WriteOption
from tooling.bench.saga import saga

if TYPE_CHECKING:
    from tooling.bench.suite import Plan

app = typer.Typer(help="Benchmarks: each starts its own nats-server and nodes on loopback.",
                  no_args_is_help=True, add_completion=False)


app.command(name="engine")(engine)
app.command(name="matching")(matching)
app.command(name="saga")(saga)
app.command(name="gateway")(gateway)


#: What only the benchmarks import; they come with the `bench` extra.
BENCH_ONLY: Final = ("aiosqlite",)


@app.callback()
def bench() -> None:
    """Benchmarks: each prints its tables and targets; `--write` refreshes its block in BENCHMARKS.md."""
    missing = [name for name in BENCH_ONLY if importlib.util.find_spec(name) is None]
    if missing:
        Console(stderr=True).print(f"qt bench needs the bench extra ({', '.join(missing)} missing): "
                                   "pip install -e '.[bench]'", markup=False)
        raise typer.Exit(2)


def _plan(quick: bool, duration: float | None, warmup: float | None, clients: str, open_rates: str,
          open_duration: float | None, store_duration: float | None, rebuild_events: int | None,
          js_duration: float | None, profile_duration: float | None, only: str, wait_quiet: float,
          retries: int, partitions: int = 2) -> Plan:
    from tooling.bench.store import StorePlan
    from tooling.bench.suite import Plan
    from tooling.bench.wallet import NatsPlan

    counts = client_counts(clients)
    sections = tuple(s.strip() for s in only.split(",") if s.strip()) if only else SECTIONS
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        raise typer.BadParameter(f"unknown sections {sorted(unknown)}; choose from {SECTIONS}",
                                 param_hint="--only")
    rates = tuple(float(r) for r in open_rates.split(",") if r.strip())
    if not rates or min(rates) <= 0:
        raise typer.BadParameter("open rates: comma-separated positive numbers", param_hint="--open-rates")
    nats = NatsPlan(
        clients=counts,
        duration_s=duration or (1.5 if quick else 5.0),
        warmup_s=warmup or (0.3 if quick else 1.0),
        open_rates=rates,
        open_duration_s=open_duration or (1.5 if quick else 5.0),
        syncs=("FULL",) if quick else ("FULL", "NORMAL"),
        profile_s=profile_duration if profile_duration is not None else (2.0 if quick else 6.0),
        retries=retries,
        quiet_wait_s=wait_quiet,
        partitions=partitions,
    )
    return Plan(
        nats=nats,
        store=StorePlan(duration_s=store_duration or (0.4 if quick else 3.0),
                        syncs=("FULL",) if quick else ("FULL", "NORMAL")),
        js_duration_s=js_duration or (1.0 if quick else 4.0),
        rebuild_events=rebuild_events or (20_000 if quick else 1_000_000),
        sections=sections,
        wait_quiet_s=wait_quiet,
        retries=retries,
    )




@app.command()
def wallet(
    quick: Annotated[bool, typer.Option(help="~30 s smoke run: short runs, FULL only, 20k-event rebuild.")] = False,
    duration: Annotated[float | None, typer.Option(help="Measured seconds per closed-loop point.")] = None,
    warmup: Annotated[float | None, typer.Option(help="Warm-up seconds before each closed-loop point.")] = None,
    clients: Annotated[str, typer.Option(help="Concurrent client counts, comma-separated.")] = "1,16,64",
    open_rates: Annotated[str, typer.Option(help="Open-loop offered rates (req/s), comma-separated.")] = "250,1000",
    open_duration: Annotated[float | None, typer.Option(help="Open-loop measured seconds.")] = None,
    store_duration: Annotated[float | None, typer.Option(help="Seconds per raw-store point.")] = None,
    rebuild_events: Annotated[int | None, typer.Option(help="Events in the rebuild account.")] = None,
    js_duration: Annotated[float | None, typer.Option(help="Seconds per JetStream publish point.")] = None,
    profile_duration: Annotated[float | None, typer.Option(help="Seconds of profiled load (0 = skip).")] = None,
    wait_quiet: Annotated[float, typer.Option(help="Wait up to this many seconds before each section for "
                                              "other processes to go quiet (shared machines).")] = 0.0,
    retries: Annotated[int, typer.Option(min=0, max=5, help="Run a section or NATS point again when other "
                                         "processes used > 0.3 cores during it.")] = 1,
    only: Annotated[str, typer.Option(help=f"Comma-separated subset of {','.join(SECTIONS)}.")] = "",
    partitions: Annotated[int, typer.Option(min=1, max=8, help="Wallet processes of the partitions section, "
                                            "one per partition (compared with 1 in the same run).")] = 2,
    write: WriteOption = False,
    out: Annotated[Path, typer.Option(help="Markdown file to refresh.")] = BENCHMARKS_MD,
    keep: Annotated[bool, typer.Option(help="Keep the temp dir (logs, databases, profiles).")] = False,
) -> None:
    """Wallet: deposits/s over NATS, open-loop p99, raw store appends/s, 1M-event rebuild, JetStream fsync."""
    from tooling.bench.mesh import bench_mesh, command_line
    from tooling.bench.report import markdown, print_targets, write_benchmarks
    from tooling.bench.suite import run_suite

    console = Console()
    if not console.is_terminal:  # a log file or a pipe: wide tables rather than wrapped cells
        console = Console(width=200)
    plan = _plan(quick, duration, warmup, clients, open_rates, open_duration, store_duration, rebuild_events,
                 js_duration, profile_duration, only, wait_quiet, retries, partitions)
    with bench_mesh("qt-bench-wallet-", keep=keep, console=console) as mesh:
        report = run_suite(plan, mesh, console, command_line("wallet"))
    print_targets(console, report.targets)
    for caveat in report.caveats:
        console.print(f"[yellow]caveat:[/yellow] {caveat}")
    if write:
        write_benchmarks(out, markdown(report))
        console.print(f"wrote {out}")


def main() -> None:
    """`python -m tooling.bench.cli`."""
    app()


if __name__ == "__main__":
    main()
