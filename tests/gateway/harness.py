"""The gateway as a real process (`python -m gateway`) against a test platform, and how tests talk to it."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from contracts.credentials import nkey_seed_path
from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER, Role
from gateway.keys import ensure_key_pair, load_private
from gateway.tokens import mint
from tests.polling import eventually
from tests.procs import REPO
from tooling.natsserver import free_port


@dataclass
class GatewayProcess:
    """One gateway process we started; only this PID is ever signalled."""

    nats_url: str
    data_dir: Path
    """QT_DATA_DIR: the JWT key pair is generated here (`secrets/`)."""
    secrets_dir: Path
    """The platform's data dir holding `secrets/gateway.nk`."""
    name: str = "gateway"
    env: dict[str, str] = field(default_factory=dict)
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL of the HTTP API."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        """Where the process writes its log."""
        return self.data_dir / f"{self.name}.log"

    def start(self) -> GatewayProcess:
        """Spawn `python -m gateway` on a free port."""
        env = dict(os.environ, QT_NATS_URL=self.nats_url, QT_DATA_DIR=str(self.data_dir),
                   QT_NKEY_SEED=str(nkey_seed_path(self.secrets_dir, "gateway")), QT_GATEWAY_PORT=str(self.port),
                   **self.env)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway"], env=env, cwd=REPO, stdout=log,
                                         stderr=subprocess.STDOUT)
        return self

    async def wait_ready(self, timeout_s: float = 60.0) -> None:
        """Poll `/ready` until it answers 200 (fails fast if the process died)."""
        async with httpx.AsyncClient(base_url=self.url, timeout=2.0) as client:
            async def ready() -> int:
                assert self.proc is not None
                if self.proc.poll() is not None:
                    raise AssertionError(f"gateway exited {self.proc.returncode}:\n{self.log_path.read_text()}")
                return (await client.get("/ready")).status_code

            await eventually(ready, lambda status: status == 200, timeout_s=timeout_s, every_s=0.1,
                             ignoring=(httpx.TransportError,), what=f"gateway ready (log: {self.log_path})")

    def token(self, account: str, role: Role = Role.TRADER, *, ttl_s: int = 3600, now: float | None = None,
              audience: str = JWT_AUDIENCE, issuer: str = JWT_ISSUER) -> str:
        """A token signed with this gateway's key pair."""
        private = load_private(ensure_key_pair(self.data_dir)[0])
        return mint(private, account=account, role=role, ttl_s=ttl_s, issuer=issuer, audience=audience, now=now)

    def kill(self) -> None:
        """Teardown: make sure our process is gone."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def bearer(token: str, key: str | None = None, **extra: str) -> dict[str, str]:
    """Request headers with a token, and an Idempotency-Key when given."""
    headers = {"Authorization": f"Bearer {token}", **extra}
    if key is not None:
        headers["Idempotency-Key"] = key
    return headers


def new_key() -> str:
    """A fresh Idempotency-Key."""
    return uuid.uuid4().hex


def new_account(prefix: str) -> str:
    """An account no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """Assert a problem+json response with this status and code; returns its body."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    body: dict[str, Any] = response.json()
    assert body["code"] == code and body["status"] == status, body
    assert {"type", "title", "detail"} <= body.keys(), body
    return body
