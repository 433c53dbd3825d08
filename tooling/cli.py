"""`qt`: the operator's CLI. It reaches nodes only over NATS, as the `ops` nkey user."""

from __future__ import annotations

from typing import Annotated

import typer

from contracts.errors import QtError
from mesh.rpc import discover
from mesh.streams import jetstream_overview
from tooling import render
from tooling.bench.cli import app as bench_app
from tooling.book_cli import book as book_command
from tooling.connection import default_data_dir, default_url
from tooling.dlq_cli import dlq_app
from tooling.micro_cli import micro_app, req
from tooling.ops import (
    DataDirOption,
    NatsUrlOption,
    Target,
    err,
    fail,
    out,
    run,
    target,
)
from tooling.saga_cli import order_app, saga_app
from tooling.token_cli import token
from tooling.wallet_cli import app as wallet_app

app = typer.Typer(
    help="QuantTrade operations: start the platform, move money, inspect services and streams.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(wallet_app, name="wallet")
app.add_typer(saga_app, name="saga")
app.add_typer(order_app, name="order")
app.add_typer(bench_app, name="bench")
app.add_typer(dlq_app, name="dlq")
app.command(name="book")(book_command)
app.command(name="token")(token)
app.command(name="req")(req)
app.add_typer(micro_app, name="micro")


@app.callback()
def options(ctx: typer.Context, nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """QuantTrade operations: start the platform, move money, inspect services and streams."""
    ctx.obj = Target(nats_url or default_url(), data_dir or default_data_dir())


@app.command()
def up(
    ctx: typer.Context,
    data_dir: DataDirOption = None,
    port: Annotated[int, typer.Option("--port", help="NATS client port.")] = 4222,
    monitor_port: Annotated[int, typer.Option("--monitor-port", help="NATS HTTP monitoring port.")] = 8222,
    no_seed: Annotated[bool, typer.Option("--no-seed", help="Do not deposit the demo money.")] = False,
    cluster: Annotated[int, typer.Option("--cluster", help="Run N nats-servers in one cluster (streams and "
                                         "buckets R3); ports count up from --port, --monitor-port, "
                                         "--cluster-port.")] = 1,
    cluster_port: Annotated[int, typer.Option("--cluster-port", help="First cluster route port.")] = 6222,
) -> None:
    """Start nats-server and every node, supervised, in the foreground; Ctrl-C stops it all."""
    from tooling.up import up as start  # only `qt up` needs the supervisor machinery

    try:
        start(target(ctx, None, data_dir).data_dir, port, monitor_port, not no_seed, out, cluster=cluster,
              cluster_port=cluster_port)
    except QtError as exc:
        fail(exc)


@app.command(name="seed")
def seed_command(ctx: typer.Context, nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Demo accounts, 15-level books on every instrument and a few hundred trades (idempotent)."""
    from tooling.seed import seed  # only this command needs it

    run(target(ctx, nats_url, data_dir), lambda nc: seed(nc, out))


@app.command()
def smoke(
    ctx: typer.Context,
    url: Annotated[str, typer.Option("--url", envvar="QT_GATEWAY_URL", help="The gateway's base URL.")]
    = "http://127.0.0.1:5121",
    data_dir: DataDirOption = None,
) -> None:
    """End-to-end checks over the public HTTP/WebSocket API; exits 1 if any fails (runs again safely)."""
    import asyncio

    from tooling.smoke import run_smoke  # only this command needs httpx and websockets

    passed = asyncio.run(run_smoke(url.rstrip("/"), target(ctx, None, data_dir).data_dir.resolve(), out))
    if not passed:
        raise typer.Exit(1)


@app.command()
def services(
    ctx: typer.Context,
    wait: Annotated[float, typer.Option("--wait", help="Seconds to gather replies.")] = 0.5,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Every micro service instance and endpoint: requests, errors, latency (`$SRV.INFO`/`$SRV.STATS`)."""
    instances = run(target(ctx, nats_url, data_dir), lambda nc: discover(nc, wait))
    if not instances:
        err.print("no micro services answered", markup=False)
        return
    out.print(render.services(instances))


@app.command()
def streams(ctx: typer.Context, nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Every JetStream stream with its consumers (pending = lag), the KV buckets and the leases."""
    view = run(target(ctx, nats_url, data_dir), lambda nc: jetstream_overview(nc.jetstream()))
    for table in render.jetstream(view):
        out.print(table)


def main() -> None:
    """Console-script entry point (`qt`)."""
    app()

