"""README's first command end to end: `qt up` (seeded, gateway included) and then `qt smoke`, twice."""

from __future__ import annotations

import subprocess
from pathlib import Path

import httpx
import pytest

from tests.polling import eventually_sync
from tests.tooling.harness import QT, QtUp, alive
from tooling.natsserver import permission_violations


@pytest.mark.slow
def test_qt_up_then_qt_smoke_passes_every_time(tmp_path: Path) -> None:
    platform = QtUp(tmp_path / "data", seed=True).start()
    try:
        _, nodes = platform.wait_ready()
        assert {"gateway", "clearing", "clearing2", "market_data"} <= nodes.keys()
        assert (tmp_path / "data" / "secrets" / "jwt-ed25519.pem").exists()
        token = subprocess.run([QT, "token", "--account", "alice"], env=platform.env, capture_output=True,
                               text=True, timeout=60, check=True).stdout.strip()
        with httpx.Client(base_url=f"http://127.0.0.1:{platform.http_port}", timeout=10) as client:
            assert _ready(client).status_code == 200
            balances = client.get("/v1/accounts/alice/balances", headers={"Authorization": f"Bearer {token}"})
            assert balances.json()["balances"]["USD"]["available"] == "100000.00"
            book = client.get("/v1/markets/AAPL/book", params={"depth": 20}).json()
            assert len(book["bids"]) >= 15 and len(book["asks"]) >= 15  # seeded through the saga
            assert client.get("/v1/markets/AAPL/trades", params={"limit": 1000}).json()["trades"]

        for _ in range(2):  # the smoke may run any number of times against the same platform
            smoke = subprocess.run([QT, "smoke"], check=False, env=platform.env, capture_output=True, text=True,
                                   timeout=300)
            print(smoke.stdout)
            assert smoke.returncode == 0, smoke.stdout + smoke.stderr
            assert "✗" not in smoke.stdout and "passed" in smoke.stdout

        assert platform.interrupt() == 0
        assert not alive(nodes["gateway"])
        # every role ran with least privilege and was refused nothing it needed
        assert permission_violations(tmp_path / "data" / "logs" / "nats-server.log") == []
    finally:
        platform.cleanup()


def _ready(client: httpx.Client, attempts: int = 300) -> httpx.Response:
    """`/ready` once the gateway has connected (it starts alongside the nodes)."""
    return eventually_sync(lambda: client.get("/ready"), lambda r: r.status_code == 200, timeout_s=attempts / 10,
                           every_s=0.1, ignoring=(httpx.TransportError,), what="the gateway ready")
