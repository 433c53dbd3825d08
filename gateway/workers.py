"""The gateway's process model: one uvicorn process, or (`QT_GATEWAY_WORKERS` > 1) a supervisor that binds
the port once and keeps that many uvicorn worker processes accepting on it.

The supervisor makes the run directory (`<data dir>/run/gateway-<port>/`: the shared limits table and
prometheus_client's multiprocess files), starts each worker in a numbered slot, restarts a worker that exits
(with backoff), and on SIGTERM/SIGINT stops every worker by PID (SIGKILL after the grace period). Every worker
dies with the supervisor (parent-death signal), so a killed supervisor leaves no worker behind.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import uvicorn

from gateway.keys import ensure_key_pair
from gateway.settings import Settings
from gateway.shared import Shared, SharedFile
from gateway.ws import WS_MAX_SIZE
from mesh.backoff import RESTART, Backoff
from mesh.orphans import die_with_parent

if TYPE_CHECKING:
    from fastapi import FastAPI

log = logging.getLogger("gateway.workers")

#: Seconds uvicorn drains open requests on shutdown; the supervisor waits a little longer before SIGKILL (and
#: less than the 10 s `qt up` gives the supervisor itself).
GRACEFUL_S: Final = 5
STOP_GRACE_S: Final = GRACEFUL_S + 3
#: Pending connections the shared listening socket holds (uvicorn's default).
BACKLOG: Final = 2048
#: Environment variable prometheus_client reads at import to keep its values in per-process files.
PROMETHEUS_DIR_ENV: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Seconds between looks at the workers.
POLL_S: Final = 0.2


def server(app: FastAPI, settings: Settings) -> uvicorn.Server:
    """The uvicorn server every gateway process runs (uvloop, the httptools parser, no access log, redacted logs)."""
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    return uvicorn.Server(uvicorn.Config(
        app, host=settings.host, port=settings.port, loop=loop, http="httptools", lifespan="on",
        proxy_headers=False, server_header=False, access_log=False, log_config=None,
        timeout_graceful_shutdown=GRACEFUL_S, ws_max_size=WS_MAX_SIZE, backlog=BACKLOG))


def run_dir(settings: Settings) -> Path:
    """Where a multi-worker gateway keeps what its workers share (one per port, private to the user)."""
    return settings.data_dir / "run" / f"gateway-{settings.port}"


@dataclass
class Worker:
    """One worker slot and the process standing in it."""

    slot: int
    proc: subprocess.Popen[bytes] | None = None
    started: float = 0.0
    delay: float | None = None
    restart_at: float | None = None


class Supervisor:
    """Binds the port, runs `settings.workers` workers on it, restarts the ones that exit, stops them by PID."""

    def __init__(self, settings: Settings, backoff: Backoff | None = None) -> None:
        self.settings = settings
        self.backoff = backoff or RESTART
        self.dir = run_dir(settings)
        self.workers = [Worker(slot) for slot in range(settings.workers)]
        self.stopping = threading.Event()
        self.sock: socket.socket | None = None
        self.slots: list[Shared] = []

    def run(self) -> None:
        """Serve until SIGTERM/SIGINT, then stop every worker and remove the run directory."""
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        if self.settings.jwt_public_key is None:
            ensure_key_pair(self.settings.data_dir)  # once, before the workers race to generate it
        shutil.rmtree(self.dir, ignore_errors=True)
        (self.dir / "metrics").mkdir(parents=True)
        SharedFile.create(self.dir / "limits")
        self.slots = [Shared.attach(self.dir, worker.slot) for worker in self.workers]
        self.sock = socket.create_server((self.settings.host, self.settings.port), backlog=BACKLOG)
        self.sock.set_inheritable(True)
        log.info("gateway supervisor pid %d: %d workers on %s:%d", os.getpid(), len(self.workers),
                 self.settings.host, self.settings.port)
        try:
            for worker in self.workers:
                self.start(worker)
            while not self.stopping.wait(POLL_S):
                self.tend()
        finally:
            self.stop_all()
            self.sock.close()
            shutil.rmtree(self.dir, ignore_errors=True)

    def start(self, worker: Worker) -> None:
        """Spawn the worker of `worker.slot` on the shared socket."""
        assert self.sock is not None
        env = dict(os.environ, **{PROMETHEUS_DIR_ENV: str(self.dir / "metrics")})
        fd = self.sock.fileno()
        worker.proc = subprocess.Popen(
            [sys.executable, "-m", "gateway.worker", str(fd), str(worker.slot), str(self.dir)], env=env,
            pass_fds=(fd,), preexec_fn=die_with_parent)  # noqa: PLW1509 (one C call, see tooling.orphans)
        worker.started, worker.restart_at = time.monotonic(), None
        log.info("gateway worker %d started (pid %d)", worker.slot, worker.proc.pid)

    def tend(self) -> None:
        """Restart, after its backoff delay, every worker that exited."""
        now = time.monotonic()
        for worker in self.workers:
            if worker.proc is None or worker.proc.poll() is None:
                continue
            if worker.restart_at is None:
                worker.delay = self.backoff.next_delay(worker.delay, now - worker.started)
                worker.restart_at = now + worker.delay
                self.slots[worker.slot].forget()
                log.warning("gateway worker %d (pid %d) exited with %s; restarting in %gs", worker.slot,
                            worker.proc.pid, worker.proc.returncode, worker.delay)
            elif now >= worker.restart_at:
                self.start(worker)

    def stop_all(self) -> None:
        """SIGTERM every live worker by PID, SIGKILL those still there after the grace period."""
        live = [w.proc for w in self.workers if w.proc is not None and w.proc.poll() is None]
        for proc in live:
            proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in live:
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.info("gateway supervisor pid %d: workers stopped", os.getpid())
