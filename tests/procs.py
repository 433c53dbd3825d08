"""Real node processes for crash tests: start `python -m nodes.<name>`, SIGKILL by PID."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from contracts.credentials import nkey_seed_path

REPO = Path(__file__).resolve().parents[1]


@dataclass
class NodeProcess:
    """One node process we started; we only ever signal this PID."""

    module: str
    nats_url: str
    data_dir: Path
    secrets_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    stopped: bool = False
    """Set once the test stopped it on purpose (`kill9`, `terminate`, `kill`): a keeper leaves it down."""

    def start(self) -> NodeProcess:
        """Spawn the node with its own data dir; its log goes to `<data_dir>/<module>.log`."""
        env = dict(os.environ)
        env.update(
            QT_NATS_URL=self.nats_url,
            QT_DATA_DIR=str(self.data_dir),
            QT_NKEY_SEED=str(nkey_seed_path(self.secrets_dir, self.module.rsplit(".", 1)[-1])),
            **self.extra_env,
        )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module], env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT
        )
        log.close()
        return self

    @property
    def log_path(self) -> Path:
        """Where the node logs (every start appends)."""
        return self.data_dir / f"{self.module}.log"

    @property
    def pid(self) -> int:
        """The PID we started."""
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> None:
        """SIGKILL the process and reap it."""
        assert self.proc is not None
        self.stopped = True
        os.kill(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self, timeout_s: float = 20.0) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        assert self.proc is not None
        self.stopped = True
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout_s)

    def kill(self) -> None:
        """Make sure the process is gone (teardown)."""
        self.stopped = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
