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
from tooling.natsserver import REPO_ROOT, NatsServer
from tooling.ops import Target, connect
from tooling.seed import seed
from tooling.supervisor import ChildSpec, Supervisor, describe_exit, say

READY_TIMEOUT_S = 60.0
#: Instances per node; clearing is stateless (sagas live in the bucket), so two share its load and
#: each recovers the other's sagas if it dies.
REPLICAS = {"clearing": 2}


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
    """How the supervisor starts each node: `python -m <module>` with the platform's env; stateless
    nodes run `REPLICAS` instances (`clearing`, `clearing2`) in one queue group."""
    env = dict(os.environ, QT_NATS_URL=nats_url, QT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    env.pop("QT_NKEY_SEED", None)  # each node finds its own role's seed under the data dir
    return [
        ChildSpec(tag, (sys.executable, "-m", module), env, REPO_ROOT, data_dir / "logs" / f"{tag}.log")
        for name, module in nodes
        for tag in [name if n == 1 else f"{name}{n}" for n in range(1, REPLICAS.get(name, 1) + 1)]
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


def gateway_url() -> str:
    """Where the gateway listens (its own settings: `QT_HTTP_PORT`, `QT_GATEWAY_HOST`)."""
    host = os.environ.get("QT_GATEWAY_HOST", "127.0.0.1")
    port = os.environ.get("QT_HTTP_PORT") or os.environ.get("QT_GATEWAY_PORT") or "5121"
    return f"http://{host}:{port}"


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
        f"  gateway      {gateway_url()}  (OpenAPI at /docs, WebSocket at /v1/ws)",
        f"  data dir     {data_dir}",
        f"  logs dir     {data_dir / 'logs'}",
        *(f"  node {name:<12} pid {child_pid}" for name, child_pid in supervisor.pids().items()),
        "",
        "  next:",
        f"    {env}qt wallet balance alice",
        f"    {env}qt order place alice AAPL BUY 1 --price 187.45",
        f"    {env}qt smoke",
        f"    curl -H \"Authorization: Bearer $({env}qt token --account alice)\" "
        f"{gateway_url()}/v1/accounts/alice/balances",
        f"    {env}qt services",
        f"    nats req wallet.balance '{{\"account\":\"alice\"}}' --nkey {seed_path}{server_flag}",
        "",
    ]
    console.print("\n".join(lines), markup=False, highlight=False)


def last_fatal(log_path: Path) -> str | None:
    """The server's last fatal or error log line (e.g. the port is taken), without its prefix."""
    with contextlib.suppress(OSError):
        for line in reversed(log_path.read_text(errors="replace").splitlines()):
            for level in ("[FTL] ", "[ERR] "):
                if level in line:
                    return line.split(level, 1)[1]
    return None


async def watch_server(server: NatsServer, stop: asyncio.Event) -> str | None:
    """Stop the platform if our nats-server dies under it; returns why, or None on a normal stop."""
    while not stop.is_set():
        if server.process is None or server.process.poll() is not None:
            code = server.process.returncode if server.process else None
            stop.set()
            return f"nats-server exited ({describe_exit(code)}); see {server.data_dir / 'logs'}"
        # Popen cannot be awaited: look again shortly unless asked to stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)
    return None


async def bring_up(nc: Client, supervisor: Supervisor, services: list[str], stop: asyncio.Event, *,
                   seed_demo: bool, console: Console) -> list[str]:
    """Create streams and buckets, start the nodes, wait for them, seed; returns who did not answer."""
    try:
        await ensure_all(nc.jetstream())
    except Exception as exc:  # without the streams nothing works: refuse to go on
        raise QtError(ErrorCode.UNAVAILABLE, f"creating streams and buckets failed: {exc!r}") from None
    supervisor.start()
    missing = await wait_ready(nc, services, stop, READY_TIMEOUT_S)
    if seed_demo and "wallet" in services and "wallet" not in missing and not stop.is_set():
        await seed(nc, console, books="clearing" in services and "clearing" not in missing)
    return missing


async def serve(server: NatsServer, data_dir: Path, *, seed_demo: bool, console: Console) -> str | None:
    """Run until SIGINT/SIGTERM, then stop every child by PID; returns why it stopped if abnormal."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(watch_server(server, stop))
    nodes = discover_nodes()
    services = [s for s in (service_name(n) for n, _ in nodes) if s]
    supervisor = Supervisor(child_specs(nodes, server.url, data_dir), console)
    try:
        nc = await connect(Target(server.url, data_dir))
        try:
            missing = await bring_up(nc, supervisor, services, stop, seed_demo=seed_demo, console=console)
        finally:
            await nc.close()
        if not stop.is_set():
            summary(server, supervisor, data_dir, console)
            if missing:
                console.print(f"qt up: degraded: no answer from {', '.join(missing)} "
                              f"(see {data_dir / 'logs'})", markup=False)
            else:
                console.print("qt up: ready", markup=False)
            await stop.wait()
        say(console, "stopping")
    finally:
        stop.set()
        await supervisor.stop()
    return await watcher


def up(data_dir: Path, port: int, monitor_port: int, seed_demo: bool, console: Console) -> None:
    """Run the platform in the foreground until Ctrl-C; raises `QtError` if it cannot run."""
    data_dir = data_dir.resolve()
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    server = NatsServer(data_dir, port=port, monitor_port=monitor_port)
    log_path = data_dir / "logs" / "nats-server.log"
    failure: str | None = None
    try:
        try:
            server.start(log_path=log_path)
        except (RuntimeError, TimeoutError, OSError) as exc:
            reason = last_fatal(log_path) or str(exc)
            raise QtError(ErrorCode.UNAVAILABLE, f"nats-server did not start: {reason} (see {log_path})") from None
        say(console, f"nats-server started (pid {server.process.pid if server.process else '?'}) on {server.url}")
        failure = asyncio.run(serve(server, data_dir, seed_demo=seed_demo, console=console))
    except KeyboardInterrupt:  # Ctrl-C before our handlers were installed: nothing else started yet
        pass
    finally:
        if server.process is not None and server.process.poll() is None:
            server.stop()
            say(console, f"nats-server stopped (pid {server.process.pid})")
    if failure:
        raise QtError(ErrorCode.UNAVAILABLE, failure)
