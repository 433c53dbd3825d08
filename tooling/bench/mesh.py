"""The processes a bench starts: nats-servers, wallets, echo responders; stopped by PID only."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nats
from nats.aio.client import Client

from contracts.credentials import nkey_seed_path
from contracts.subjects import WALLET_PARTITION_ENV, WALLET_PARTITIONS_ENV
from tooling.natsserver import REPO_ROOT, NatsServer, free_port

ECHO_SUBJECT = "bench.echo"
#: Cores used by other processes above which a measurement counts as disturbed.
DISTURBED = 0.3


@dataclass
class Child:
    """A process we spawned, with where its output goes."""

    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class Mesh:
    """Owns every process of a bench run under `root`; `close()` stops exactly those PIDs."""

    root: Path
    servers: list[NatsServer] = field(default_factory=list)
    children: list[Child] = field(default_factory=list)

    def fresh_dir(self, name: str) -> Path:
        """A new, empty directory under the root: `name`, or `name-2`, `name-3`... when taken."""
        path, n = self.root / name, 1
        while path.exists():
            n += 1
            path = self.root / f"{name}-{n}"
        path.mkdir(parents=True)
        return path

    def server(self, name: str, *, sync_interval: str | None = None) -> NatsServer:
        """Start a nats-server (JetStream, nkey auth, loopback, free ports) with its own fresh store."""
        data = self.fresh_dir(name)
        server = NatsServer(data, port=free_port(), monitor_port=free_port(), sync_interval=sync_interval)
        self.servers.append(server)
        server.start(log_path=data / "nats-server.log")
        return server

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> Child:
        """Start `python <argv>` from the repo root in its own session, output to a log file."""
        log = self.root / f"{name}-{len(self.children)}.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen([sys.executable, *argv], env={**os.environ, **env}, cwd=REPO_ROOT,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        child = Child(name, proc, log)
        self.children.append(child)
        return child

    def wallet(self, server: NatsServer, name: str, *, sync: str, profile_to: Path | None = None,
               partition: int = 0, partitions: int = 1) -> Child:
        """A `python -m nodes.wallet` process (partition `partition` of `partitions`) on a fresh data dir
        (optionally under cProfile)."""
        data = self.fresh_dir(name)
        env = {
            "QT_NATS_URL": server.url,
            "QT_DATA_DIR": str(data),
            "QT_NKEY_SEED": str(nkey_seed_path(server.data_dir, "wallet")),
            "QT_WALLET_SYNC": sync,
            WALLET_PARTITION_ENV: str(partition),
            WALLET_PARTITIONS_ENV: str(partitions),
        }
        argv = ["-m", "nodes.wallet"]
        if profile_to is not None:
            argv = ["-m", "tooling.bench.profiled", str(profile_to), "nodes.wallet"]
        return self.spawn(name, argv, env)

    def echo(self, server: NatsServer, name: str = "echo") -> Child:
        """The peer: a trivial nats-py echo responder on uvloop, in its own process."""
        seed = str(nkey_seed_path(server.data_dir, "ops"))
        return self.spawn(name, ["-m", "tooling.bench.echo", server.url, seed, ECHO_SUBJECT], {})

    def stop(self, child: Child, timeout_s: float = 30.0) -> int | None:
        """SIGTERM one child by PID and wait; SIGKILL if it lingers. Returns its exit code."""
        proc = child.proc
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        return proc.returncode

    def stop_server(self, server: NatsServer) -> None:
        """Stop one nats-server we started."""
        server.stop()

    def close(self) -> None:
        """Stop every child, then every server; never raises, never touches other PIDs."""
        for child in reversed(self.children):
            with contextlib.suppress(Exception):
                self.stop(child, timeout_s=20.0)
        for server in reversed(self.servers):
            with contextlib.suppress(Exception):
                server.stop()


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds of a process (all threads) or one thread of it; 0 if gone."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    try:
        with open(path) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_children() -> dict[int, list[int]]:
    """Parent PID -> its live children's PIDs, from every /proc/<n>/stat."""
    parents: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat") as handle:
                ppid = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        parents.setdefault(ppid, []).append(int(entry.name))
    return parents


def descendants(pid: int, children: dict[int, list[int]]) -> list[int]:
    """The live processes below `pid`: its children, theirs, and so on."""
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def tree_cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds of each named process plus its live descendants (a node's or the gateway's worker processes
    count as its own). This process counts alone: everything the bench started is its descendant."""
    children = process_children()
    me = os.getpid()
    return {name: cpu_seconds(pid) + (0.0 if pid == me else sum(cpu_seconds(c) for c in descendants(pid, children)))
            for name, pid in pids.items()}


def rss_kb(pid: int, field_name: str = "VmRSS") -> int:
    """A process's resident set (or `VmHWM`, its peak) in kB, from /proc/<pid>/status; 0 if gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field_name}:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def machine_busy_seconds() -> float:
    """CPU seconds all cores of the machine have spent not idle (from /proc/stat)."""
    with open("/proc/stat") as handle:
        fields = [int(x) for x in handle.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


class OtherLoad:
    """CPU the rest of the machine uses from creation to `stop()`: /proc/stat minus this process,
    its reaped children and the live processes in `exclude`."""

    def __init__(self, exclude: list[int] | None = None) -> None:
        self.exclude = exclude or []
        self._start = self._now()

    def _now(self) -> tuple[float, float, float]:
        t = os.times()
        mine = t.user + t.system + t.children_user + t.children_system
        mine += sum(cpu_seconds(pid) for pid in self.exclude if pid != os.getpid())
        return time.perf_counter(), machine_busy_seconds(), mine

    def stop(self) -> float:
        """Cores used by others since creation."""
        wall, busy, ours = (b - a for a, b in zip(self._start, self._now(), strict=True))
        return max(0.0, busy - ours) / wall if wall > 0 else 0.0


def wait_quiet(max_s: float, threshold: float = DISTURBED / 2, sample_s: float = 2.0) -> tuple[float, float]:
    """Wait until other processes use under `threshold` cores over `sample_s`; (seconds waited, last load)."""
    started = time.perf_counter()
    while True:
        gauge = OtherLoad()
        time.sleep(sample_s)
        load = gauge.stop()
        waited = time.perf_counter() - started
        if load < threshold or waited >= max_s:
            return waited, load


async def client(server: NatsServer, name: str = "qt-bench") -> Client:
    """A bench client connected as the `ops` user."""
    return await nats.connect(server.url, name=name,
                              nkeys_seed=str(nkey_seed_path(server.data_dir, "ops")),
                              allow_reconnect=False, connect_timeout=5)


async def wait_ready(nc: Client, subject: str, child: Child, timeout_s: float = 30.0) -> None:
    """Wait until `subject` answers (a micro PING or an echo), failing fast if the child died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise RuntimeError(f"{child.name} exited with {child.proc.returncode}; see {child.log}")
        with contextlib.suppress(Exception):
            await nc.request(subject, b"", timeout=0.5)
            return
        await asyncio.sleep(0.1)
    raise TimeoutError(f"{child.name} did not answer on {subject} within {timeout_s}s; see {child.log}")


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)  # so the finally blocks stop what we started


@contextlib.contextmanager
def bench_mesh(prefix: str, *, keep: bool, console: Any) -> Iterator[Mesh]:
    """A Mesh in a fresh temp dir; on exit (SIGTERM included) its PIDs stop and the dir goes."""
    root = Path(tempfile.mkdtemp(prefix=prefix))
    mesh = Mesh(root)
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    console.print(f"[dim]work dir {root}[/dim]")
    try:
        yield mesh
    finally:
        mesh.close()
        signal.signal(signal.SIGTERM, previous)
        if keep:
            console.print(f"[dim]kept {root}[/dim]")
        else:
            shutil.rmtree(root, ignore_errors=True)


def command_line(name: str) -> str:
    """How `qt bench <name>` was invoked, for the report."""
    args = sys.argv[sys.argv.index(name) + 1:] if name in sys.argv else []
    return shlex.join(["qt", "bench", name, *args])
