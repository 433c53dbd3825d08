"""`qt up`: nats-server, streams and buckets, every node supervised, demo money, a summary."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import shlex
import signal
import socket
import sys
from collections.abc import Iterable
from pathlib import Path

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from rich.console import Console

from contracts.credentials import PRIVATE_UMASK, nkey_seed_path
from contracts.errors import ErrorCode, QtError
from contracts.instruments import engine_instruments
from contracts.subjects import (
    WALLET_PARTITION_ENV,
    WALLET_PARTITIONS_ENV,
    WALLET_SERVICE,
    readiness_probes,
    wallet_account_subject,
)
from mesh.backoff import RESTART, Backoff
from mesh.jetstream import ensure_all
from tooling.natsserver import REPO_ROOT, NatsServer, cluster_of, servers_url, start_all
from tooling.ops import Target, connect
from tooling.private import make_private
from tooling.seed import seed
from tooling.supervisor import ChildSpec, Supervisor, describe_exit, say

READY_TIMEOUT_S = 60.0
SERVER_START_TIMEOUT_S = 20.0
#: Instances per node; clearing is stateless (sagas live in the bucket), so two share its load and
#: each recovers the other's sagas if it dies.
#: Matching runs as engines that split the listed instruments (`engine_instruments`), a lease each.
REPLICAS = {"clearing": 2, "matching": 2}
#: Servers that keep each stream and bucket on a cluster: any one may die without losing a write.
CLUSTER_REPLICAS = 3
#: Wallet partitions `qt up` runs unless `QT_WALLET_PARTITIONS` says otherwise: one process each
#: (`wallet-p0`, `wallet-p1`), each with its own lease and SQLite file.
WALLET_PARTITIONS = 2


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


def wallet_partitions() -> int:
    """The mesh's wallet partition count: `QT_WALLET_PARTITIONS`, else `WALLET_PARTITIONS`."""
    raw = os.environ.get(WALLET_PARTITIONS_ENV) or str(WALLET_PARTITIONS)
    if not raw.isdigit() or int(raw) < 1:
        raise QtError(ErrorCode.VALIDATION, f"{WALLET_PARTITIONS_ENV} must be a whole number >= 1, got {raw!r}")
    return int(raw)


def child_specs(nodes: Iterable[tuple[str, str]], nats_url: str, data_dir: Path) -> list[ChildSpec]:
    """How the supervisor starts each node: `python -m <module>` with the platform's env; stateless
    nodes run `REPLICAS` instances (`clearing`, `clearing2`) in one queue group, matching runs `REPLICAS`
    engines (`matching`, `matching2`), each given its share of the instruments, and the wallet one process
    per partition (`wallet-p0`, `wallet-p1`). Every node is told the partition count (callers route by it)."""
    partitions = wallet_partitions()
    env = dict(os.environ, QT_NATS_URL=nats_url, QT_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1",
               **{WALLET_PARTITIONS_ENV: str(partitions)})
    env.pop("QT_NKEY_SEED", None)  # each node finds its own role's seed under the data dir
    specs: list[ChildSpec] = []
    for name, module in nodes:
        count = REPLICAS.get(name, 1)
        if name == "wallet":
            instances = [(f"wallet-p{p}", {**env, WALLET_PARTITION_ENV: str(p)}) for p in range(partitions)]
        elif name == "matching":
            instances = [(name if n == 0 else f"{name}{n + 1}",
                          {**env, "QT_MATCHING_INSTRUMENTS": ",".join(engine_instruments(n, count))})
                         for n in range(count)]
        else:
            instances = [(name if n == 1 else f"{name}{n}", env) for n in range(1, count + 1)]
        specs += [ChildSpec(tag, (sys.executable, "-m", module), tag_env, REPO_ROOT, data_dir / "logs" / f"{tag}.log")
                  for tag, tag_env in instances]
    return specs


async def wait_ready(nc: Client, services: list[str], stop: asyncio.Event, timeout_s: float) -> list[str]:
    """Probe each service (each wallet partition, each instrument's engine) until it answers; returns
    those that did not (empty = all ready)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    probes = readiness_probes(services, wallet_partitions())
    waiting = list(probes)
    while waiting and not stop.is_set() and loop.time() < deadline:
        try:
            await nc.request(probes[waiting[0]], b"", timeout=0.5)
            waiting.pop(0)
            continue
        except (NoRespondersError, NatsTimeoutError):
            pass
        # Not up yet; poll again shortly unless asked to stop.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.1)
    return waiting


def gateway_address() -> tuple[str, int]:
    """Where the gateway listens (its own settings: `QT_HTTP_PORT`, `QT_GATEWAY_HOST`)."""
    host = os.environ.get("QT_GATEWAY_HOST", "127.0.0.1")
    port = os.environ.get("QT_HTTP_PORT") or os.environ.get("QT_GATEWAY_PORT") or "5121"
    try:
        return host, int(port)
    except ValueError:
        raise QtError(ErrorCode.VALIDATION, f"QT_HTTP_PORT must be a port number, got {port!r}") from None


def gateway_url() -> str:
    """The gateway's base URL."""
    host, port = gateway_address()
    return f"http://{host}:{port}"


def port_taken(host: str, port: int) -> bool:
    """True when something already listens on (host, port): binding there fails with EADDRINUSE."""
    with socket.socket() as sock:
        # Without SO_REUSEADDR a port in TIME_WAIT after our own last run would look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return True
            raise QtError(ErrorCode.VALIDATION, f"cannot listen on {host}:{port}: {exc.strerror}") from None
    return False


def refuse_taken_ports(servers: list[NatsServer], with_gateway: bool) -> None:
    """Refuse to start anything when a port we need is taken (another `qt up`, most likely): otherwise
    nodes and the seed would run against whichever server owns it."""
    wanted: list[tuple[str, str, int]] = []
    for server in servers:
        wanted += [("NATS client port, --port", server.host, server.port),
                   ("NATS monitor port, --monitor-port", server.host, server.monitor_port)]
        if server.seat is not None:
            wanted.append(("NATS cluster route port, --cluster-port", server.host, server.seat.route_port))
    if with_gateway:
        wanted.append(("gateway HTTP port, QT_HTTP_PORT", *gateway_address()))
    ports = [port for _, _, port in wanted]
    if len(set(ports)) != len(ports):
        raise QtError(ErrorCode.VALIDATION, "the NATS client, NATS monitor and gateway HTTP ports must differ, got "
                      + ", ".join(f"{what} {port}" for what, _, port in wanted))
    for what, host, port in wanted:
        if port_taken(host, port):
            raise QtError(ErrorCode.UNAVAILABLE, f"port {port} ({what}) on {host} is already in use: "
                          "another qt up may be running; stop it or choose another port (nothing was started)")


def summary(servers: list[NatsServer], supervisor: Supervisor, data_dir: Path, console: Console) -> None:
    """Where everything is, and what to type next."""
    url = servers_url(servers)
    seed_path = nkey_seed_path(data_dir, "ops")
    with contextlib.suppress(ValueError):
        seed_path = seed_path.relative_to(Path.cwd())
    default = url == "nats://127.0.0.1:4222"
    server_flag = "" if default else f" -s {url}"
    env = "" if default and data_dir == Path("data").resolve() else (
        f"QT_NATS_URL={url} QT_DATA_DIR={shlex.quote(str(data_dir))} ")
    alice_balance = wallet_account_subject("balance", "alice", wallet_partitions())
    lines = [""]
    for server in servers:
        pid = server.process.pid if server.process else None
        member = f", {server.name}" if server.seat is not None else ""
        lines += [f"  nats         {server.url}  (nats-server pid {pid}{member})",
                  f"  monitor      http://{server.host}:{server.monitor_port}"]
    lines += [
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
        f"    {env}qt req {alice_balance} '{{\"account\":\"alice\"}}'",
        f"    nats req {alice_balance} '{{\"account\":\"alice\"}}' --nkey {seed_path}{server_flag}  "
        "(optional: the nats CLI)",
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


def server_log(data_dir: Path, server: NatsServer) -> Path:
    """Where a server logs: `nats-server.log`, or `nats-<name>.log` for a cluster member."""
    return data_dir / "logs" / ("nats-server.log" if server.seat is None else f"nats-{server.name}.log")


async def keep_server(server: NatsServer, log_path: Path, stop: asyncio.Event, console: Console,
                      backoff: Backoff | None = None) -> None:
    """Restart our nats-server with backoff whenever it exits, until `stop`; its JetStream store under
    the data dir survives, and the nodes reconnect on their own (unlimited reconnects; on a cluster,
    to the other members meanwhile)."""
    what = "nats-server" if server.seat is None else f"nats-server {server.name}"
    backoff = backoff or RESTART
    loop = asyncio.get_running_loop()
    delay: float | None = None
    started = loop.time()
    while not stop.is_set():
        proc = server.process
        if proc is not None and proc.poll() is None:
            # Popen cannot be awaited: look again shortly unless asked to stop.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
            continue
        uptime = loop.time() - started
        delay = backoff.next_delay(delay, uptime)
        say(console, f"{what} exited ({describe_exit(proc.returncode if proc else None)}) after "
                     f"{uptime:.1f}s; restarting in {delay:g}s")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)
        if stop.is_set():
            return
        started = loop.time()
        try:
            # Spawned from this (the main) thread: the child's parent-death signal is tied to the thread.
            server.spawn(log_path=log_path)
            await asyncio.to_thread(server.wait_healthy, SERVER_START_TIMEOUT_S)
        except (RuntimeError, TimeoutError, OSError) as exc:
            say(console, f"{what} did not start: {last_fatal(log_path) or exc} (see {log_path})")
            server.stop()  # ours, by PID: an unhealthy one is replaced on the next round
            continue
        say(console, f"nats-server started (pid {server.process.pid if server.process else '?'}) on {server.url}")


async def bring_up(nc: Client, supervisor: Supervisor, services: list[str], stop: asyncio.Event, *,
                   seed_demo: bool, console: Console, replicas: int = 1) -> list[str]:
    """Create streams and buckets, start the nodes, wait for them, seed; returns who did not answer."""
    try:
        await ensure_all(nc.jetstream(), replicas)
    except Exception as exc:  # without the streams nothing works: refuse to go on
        raise QtError(ErrorCode.UNAVAILABLE, f"creating streams and buckets failed: {exc!r}") from None
    supervisor.start()
    missing = await wait_ready(nc, services, stop, READY_TIMEOUT_S)
    wallet_down = any(name.startswith(WALLET_SERVICE) for name in missing)
    if seed_demo and WALLET_SERVICE in services and not wallet_down and not stop.is_set():
        await seed(nc, console, books="clearing" in services and "clearing" not in missing)
    return missing


async def serve(servers: list[NatsServer], nodes: list[tuple[str, str]], data_dir: Path, *, seed_demo: bool,
                console: Console) -> None:
    """Run until SIGINT/SIGTERM, keeping every nats-server and node up, then stop each child by PID."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    keepers = [asyncio.create_task(keep_server(server, server_log(data_dir, server), stop, console))
               for server in servers]
    services = [s for s in (service_name(n) for n, _ in nodes) if s]
    url = servers_url(servers)
    supervisor = Supervisor(child_specs(nodes, url, data_dir), console)
    replicas = 1 if len(servers) == 1 else min(CLUSTER_REPLICAS, len(servers))
    try:
        nc = await connect(Target(url, data_dir))
        try:
            missing = await bring_up(nc, supervisor, services, stop, seed_demo=seed_demo, console=console,
                                     replicas=replicas)
        finally:
            await nc.close()
        if not stop.is_set():
            summary(servers, supervisor, data_dir, console)
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
        await asyncio.gather(*keepers)


def platform_servers(data_dir: Path, port: int, monitor_port: int, cluster: int, cluster_port: int) -> list[NatsServer]:
    """One server, or a cluster of `cluster` members on consecutive client, monitor and route ports."""
    if cluster < 1:
        raise QtError(ErrorCode.VALIDATION, f"--cluster must be at least 1, got {cluster}")
    if cluster == 1:
        return [NatsServer(data_dir, port=port, monitor_port=monitor_port)]
    return cluster_of(data_dir, [port + i for i in range(cluster)], [monitor_port + i for i in range(cluster)],
                      [cluster_port + i for i in range(cluster)])


def up(data_dir: Path, port: int, monitor_port: int, seed_demo: bool, console: Console, *, cluster: int = 1,
       cluster_port: int = 6222) -> None:
    """Run the platform in the foreground until Ctrl-C; raises `QtError` if it cannot run."""
    data_dir = data_dir.resolve()
    servers = platform_servers(data_dir, port, monitor_port, cluster, cluster_port)
    nodes = discover_nodes()
    refuse_taken_ports(servers, with_gateway=any(name == "gateway" for name, _ in nodes))
    # Logs, secrets, SQLite files and the JetStream store are the platform's alone: what exists is
    # made private now, and everything created later (by us, nats-server or a node) is by the umask.
    os.umask(PRIVATE_UMASK)
    make_private(data_dir)
    (data_dir / "logs").mkdir(parents=True, exist_ok=True)
    try:
        try:
            start_all(servers, timeout_s=SERVER_START_TIMEOUT_S, log_paths=[server_log(data_dir, s) for s in servers])
        except (RuntimeError, TimeoutError, OSError) as exc:
            reasons = [r for r in (last_fatal(server_log(data_dir, s)) for s in servers) if r]
            raise QtError(ErrorCode.UNAVAILABLE, f"nats-server did not start: {reasons[0] if reasons else exc} "
                          f"(see {data_dir / 'logs'})") from None
        for server in servers:
            say(console, f"nats-server started (pid {server.process.pid if server.process else '?'}) on {server.url}")
        asyncio.run(serve(servers, nodes, data_dir, seed_demo=seed_demo, console=console))
    except KeyboardInterrupt:  # Ctrl-C before our handlers were installed: nothing else started yet
        pass
    finally:
        for server in servers:
            if server.process is not None and server.process.poll() is None:
                server.stop()
                say(console, f"nats-server stopped (pid {server.process.pid})")
