"""`qt up`: nats-server, streams and buckets, every node supervised, demo money, a summary."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
import sys
from collections.abc import Iterable
from pathlib import Path

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from rich.console import Console

from contracts.credentials import nkey_seed_path
from contracts.errors import ErrorCode, QtError
from contracts.jetstream import ensure_all
from contracts.subjects import wallet_subject
from contracts.wallet import Deposit
from tooling.natsserver import REPO_ROOT, NatsServer
from tooling.ops import connect, request, Target
from tooling.supervisor import ChildSpec, Supervisor, say

DEMO_ACCOUNTS = ("alice", "bob", "carol", "dan", "mm1", "mm2")
#: Decimal strings at each asset's scale (contracts/money.py): USD 2, AAPL 4, BTC 8.
DEMO_FUNDS = (("USD", "100000.00"), ("AAPL", "100.0000"), ("BTC", "2.00000000"))
READY_TIMEOUT_S = 60.0


def discover_nodes(root: Path = REPO_ROOT) -> list[tuple[str, str]]:
    """(name, module) of every `nodes/<name>/__main__.py`, then the gateway when it exists."""
    found = [(path.parent.name, f"nodes.{path.parent.name}")
             for path in sorted((root / "nodes").glob("*/__main__.py"))]
    if (root / "gateway" / "__main__.py").exists():  # DESIGN: `qt up` runs the gateway too
        found.append(("gateway", "gateway"))
    return found


def service_name(node: str) -> str | None:
    """The micro service a node registers (DESIGN's table: market_data -> `marketdata`)."""
    return None if node == "gateway" else node.replace("_", "")


def child_specs(nodes: Iterable[tuple[str, str]], nats_url: str, data_dir: Path) -> list[ChildSpec]:
    """How the supervisor starts each node: `python -m <module>` with the platform's env."""
    env = dict(os.environ, QT_NATS_URL=nats_url, QT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.pop("QT_NKEY_SEED", None)  # each node finds its own role's seed under the data dir
    return [
        ChildSpec(name, (sys.executable, "-m", module), env, REPO_ROOT, data_dir / "logs" / f"{name}.log")
        for name, module in nodes
    ]


async def wait_ready(nc: Client, services: list[str], stop: asyncio.Event, timeout_s: float) -> list[str]:
    """PING each service until it answers; returns those that did not (empty = all ready)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    waiting = list(services)
    while waiting and not stop.is_set() and loop.time() < deadline:
        try:
            await nc.request(f"$SRV.PING.{waiting[0]}", b"", timeout=0.5)
            waiting.pop(0)
            continue
        except (NoRespondersError, NatsTimeoutError):
            pass
        # Not up yet; poll again shortly unless asked to stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return waiting


async def seed(nc: Client, console: Console) -> None:
    """Demo money with fixed op_ids: a second `qt up` replays the first answers, adds nothing."""
    done = 0
    for account in DEMO_ACCOUNTS:
        for asset, amount in DEMO_FUNDS:
            command = Deposit.model_validate(
                {"account": account, "asset": asset, "amount": amount, "op_id": f"seed:{account}:{asset}"},
                context={"wire": "json"},
            )
            try:
                await request(nc, wallet_subject("deposit"), command)
                done += 1
            except QtError as exc:
                say(console, f"seed {account} {asset}: error {exc.code}: {exc.message}")
    say(console, f"seed: {done} deposits ensured for {', '.join(DEMO_ACCOUNTS)} "
                 f"({', '.join(f'{a} {v}' for a, v in DEMO_FUNDS)}; op_id seed:<account>:<asset>)")


def summary(server: NatsServer, supervisor: Supervisor, data_dir: Path, console: Console) -> None:
    """Where everything is, and what to type next."""
    pid = server.process.pid if server.process else None
    seed_path = nkey_seed_path(data_dir, "ops")
    with contextlib.suppress(ValueError):
        seed_path = seed_path.relative_to(Path.cwd())
    server_flag = "" if server.port == 4222 else f" -s {server.url}"
    env = "" if server.port == 4222 and data_dir == Path("data").resolve() else (
        f"QT_NATS_URL={server.url} QT_DATA_DIR={shlex.quote(str(data_dir))} ")
    lines = [
        "",
        f"  nats         {server.url}  (nats-server pid {pid})",
        f"  monitor      http://{server.host}:{server.monitor_port}",
        f"  data dir     {data_dir}",
        f"  logs dir     {data_dir / 'logs'}",
        *(f"  node {name:<12} pid {child_pid}" for name, child_pid in supervisor.pids().items()),
        "",
        "  next:",
        f"    {env}qt wallet balance alice",
        f"    {env}qt services",
        f"    nats req wallet.balance '{{\"account\":\"alice\"}}' --nkey {seed_path}{server_flag}",
        "",
    ]
    console.print("\n".join(lines), markup=False, highlight=False)


async def serve(server: NatsServer, data_dir: Path, *, seed_demo: bool, console: Console) -> None:
    """Everything after nats-server is healthy, until SIGINT/SIGTERM; then stop children by PID."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    nc = await connect(Target(server.url, data_dir))
    try:
        await ensure_all(nc.jetstream())
        nodes = discover_nodes()
        supervisor = Supervisor(child_specs(nodes, server.url, data_dir), console)
        supervisor.start()
        try:
            services = [s for s in (service_name(n) for n, _ in nodes) if s]
            missing = await wait_ready(nc, services, stop, READY_TIMEOUT_S)
            if not stop.is_set():
                if seed_demo and "wallet" in services and "wallet" not in missing:
                    await seed(nc, console)
                await nc.close()
                summary(server, supervisor, data_dir, console)
                if missing:
                    console.print(f"qt up: degraded: no answer from {', '.join(missing)} "
                                  f"(see {data_dir / 'logs'})", markup=False)
                else:
                    console.print("qt up: ready", markup=False)
                await stop.wait()
            say(console, "stopping")
        finally:
            await supervisor.stop()
    finally:
        if not nc.is_closed:
            await nc.close()


def up(data_dir: Path, port: int, monitor_port: int, seed_demo: bool, console: Console) -> None:
    """Start the platform in the foreground; returns after a clean stop (raises `QtError` if it cannot start)."""
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    server = NatsServer(data_dir, port=port, monitor_port=monitor_port)
    log_path = data_dir / "logs" / "nats-server.log"
    try:
        try:
            server.start(log_path=log_path)
        except (RuntimeError, TimeoutError, OSError) as exc:
            raise QtError(ErrorCode.UNAVAILABLE, f"nats-server did not start: {exc} (see {log_path})") from None
        say(console, f"nats-server started (pid {server.process.pid if server.process else '?'}) on {server.url}")
        asyncio.run(serve(server, data_dir, seed_demo=seed_demo, console=console))
    finally:
        if server.process is not None:
            server.stop()
            say(console, f"nats-server stopped (pid {server.process.pid})")
