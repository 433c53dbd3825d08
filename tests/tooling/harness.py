"""`qt up` as a real subprocess: read its output, run `qt` commands against it, stop it by PID."""

from __future__ import annotations

import contextlib
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from tooling.natsserver import free_port

QT = str(Path(sys.executable).parent / "qt")
READY = re.compile(r"^qt up: ready$")
NATS_PID = re.compile(r"nats-server pid (\d+)[,)]")
NATS_STARTED = re.compile(r"^\[qt\] nats-server started \(pid (\d+)\)")
NODE_PID = re.compile(r"^\s+node ([\w-]+)\s+pid (\d+)$")
STARTED = re.compile(r"^\[qt\] ([\w-]+) started \(pid (\d+)\)$")


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@dataclass
class QtUp:
    """One `qt up` process on free ports with its own data dir."""

    data_dir: Path
    seed: bool = False
    cluster: int = 1
    """nats-servers (`--cluster`): client, monitor and route ports count up from the first."""
    port: int = field(default_factory=free_port)
    monitor_port: int = field(default_factory=free_port)
    cluster_port: int = field(default_factory=free_port)
    http_port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    output: list[str] = field(default_factory=list)
    pids: set[int] = field(default_factory=set)
    _lines: queue.Queue[str | None] = field(default_factory=queue.Queue)

    @property
    def env(self) -> dict[str, str]:
        """The environment a `qt` command needs to reach this platform."""
        urls = ",".join(f"nats://127.0.0.1:{self.port + n}" for n in range(self.cluster))
        return dict(os.environ, QT_NATS_URL=urls, QT_DATA_DIR=str(self.data_dir),
                    QT_HTTP_PORT=str(self.http_port), QT_GATEWAY_URL=f"http://127.0.0.1:{self.http_port}")

    @property
    def argv(self) -> list[str]:
        """The `qt up` command line for this platform's ports and data dir."""
        return [QT, "up", "--data-dir", str(self.data_dir), "--port", str(self.port),
                "--monitor-port", str(self.monitor_port), *([] if self.seed else ["--no-seed"]),
                *(["--cluster", str(self.cluster), "--cluster-port", str(self.cluster_port)]
                  if self.cluster > 1 else [])]

    def start(self) -> QtUp:
        """Spawn `qt up`; a thread copies its output lines into a queue."""
        self.proc = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                     env=self.env)
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.proc.stdout:
            for line in self.proc.stdout:
                self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout_s: float = 30.0) -> re.Match[str]:
        """The next output line matching `pattern`; fails when qt up ends or the time is up."""
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self._lines.get(timeout=left)
            except queue.Empty:
                break
            if line is None:
                raise AssertionError("qt up ended:\n" + "\n".join(self.output))
            self.output.append(line)
            for found in (NATS_PID.search(line), NATS_STARTED.match(line), NODE_PID.match(line), STARTED.match(line)):
                if found:
                    self.pids.add(int(found.groups()[-1]))
            if match := pattern.search(line):
                return match
        raise AssertionError(f"no line matching {pattern.pattern!r}:\n" + "\n".join(self.output))

    def nats_pids(self) -> list[int]:
        """Every nats-server PID the summary printed (one per cluster member)."""
        return [int(m.group(1)) for line in self.output if (m := NATS_PID.search(line))]

    def wait_ready(self) -> tuple[int, dict[str, int]]:
        """Wait for `qt up: ready`; returns the nats-server PID and each node's PID from the summary."""
        self.wait_for(READY, timeout_s=60)
        nats_pid = next(int(m.group(1)) for line in self.output if (m := NATS_PID.search(line)))
        nodes = {m.group(1): int(m.group(2)) for line in self.output if (m := NODE_PID.match(line))}
        return nats_pid, nodes

    def qt(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run one `qt` command against this platform."""
        return subprocess.run([QT, *args], check=False, env=self.env, capture_output=True, text=True, timeout=60)

    def interrupt(self, timeout_s: float = 30.0) -> int:
        """Ctrl-C: SIGINT to qt up's PID; returns its exit code."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.wait_exit(timeout_s)

    def wait_exit(self, timeout_s: float = 30.0) -> int:
        """Wait for qt up to end on its own; returns its exit code with all its output read."""
        assert self.proc is not None
        code = self.proc.wait(timeout=timeout_s)
        with contextlib.suppress(AssertionError):  # drain the rest of the output for assertions
            self.wait_for(re.compile(r"(?!)"), timeout_s=5)
        return code

    def cleanup(self) -> None:
        """Teardown: whatever is still running of what this platform printed, SIGKILL by PID."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        for pid in self.pids:
            if alive(pid) and str(self.data_dir) in _environ_or_cmdline(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _environ_or_cmdline(pid: int) -> str:
    """What identifies a process as ours: its argv (nats-server) or environment (nodes)."""
    text = ""
    for part in ("cmdline", "environ"):
        with contextlib.suppress(OSError):
            text += Path(f"/proc/{pid}/{part}").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    return text


def available(platform: QtUp, account: str, asset: str = "USD") -> str:
    """The available column of `qt wallet balance` for one asset, exactly as printed."""
    result = platform.qt("wallet", "balance", account)
    assert result.returncode == 0, result.stderr
    match = re.search(rf"{asset}\s*│\s*([0-9.]+)\s*│", result.stdout)
    assert match, result.stdout
    return match.group(1)


def usd_available(platform: QtUp, account: str = "alice") -> str:
    """The USD available column of `qt wallet balance`, exactly as printed."""
    return available(platform, account)


def free_port_run(count: int) -> int:
    """The first of `count` consecutive loopback ports that were free a moment ago."""
    while True:
        base = free_port()
        if base + count < 65536 and all(_free(base + n) for n in range(1, count)):
            return base


def _free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True
