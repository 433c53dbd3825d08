"""`qt up` restarts a killed nats-server; the store survives and the nodes reconnect."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.polling import eventually_sync
from tests.tooling.harness import NATS_STARTED, QtUp, alive, available


def until_ok(platform: QtUp, *args: str, timeout_s: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run a `qt` command until it succeeds (the nodes reconnect at their own pace) or time runs out."""
    return eventually_sync(lambda: platform.qt(*args), lambda result: result.returncode == 0, timeout_s=timeout_s,
                           every_s=0, what=f"qt {' '.join(args)} succeeding")


@pytest.mark.slow
def test_killed_nats_server_comes_back_with_balances_and_sagas_working(tmp_path: Path,
                                                                       platforms: list[QtUp]) -> None:
    platform = QtUp(tmp_path / "data").start()
    platforms.append(platform)
    nats_pid, _ = platform.wait_ready()
    for account, asset, amount in (("alice", "USD", "1000.00"), ("bob", "AAPL", "3.0000")):
        done = platform.qt("wallet", "deposit", account, asset, amount)
        assert done.returncode == 0, done.stderr

    os.kill(nats_pid, signal.SIGKILL)
    restarted = int(platform.wait_for(NATS_STARTED, timeout_s=60).group(1))
    assert restarted != nats_pid and alive(restarted) and not alive(nats_pid)
    assert "qt up: stopping" not in "\n".join(platform.output)

    assert until_ok(platform, "wallet", "balance", "alice").returncode == 0
    assert available(platform, "alice") == "1000.00" and available(platform, "bob", "AAPL") == "3.0000"
    deposit = until_ok(platform, "wallet", "deposit", "carol", "USD", "7.00")
    assert deposit.returncode == 0, deposit.stderr
    bob_sells_alice_one_share(platform)
    assert available(platform, "carol") == "7.00"
    assert gateway_balances(platform, "alice")["USD"]["held"] == "0.00"  # the gateway reconnected too
    assert platform.interrupt() == 0


def gateway_balances(platform: QtUp, account: str, timeout_s: float = 60.0) -> dict[str, Any]:
    """The account's balances over the gateway's HTTP API, once it answers 200."""
    token = platform.qt("token", "--account", account).stdout.strip()
    reply = eventually_sync(
        lambda: httpx.get(f"http://127.0.0.1:{platform.http_port}/v1/accounts/{account}/balances",
                          headers={"Authorization": f"Bearer {token}"}, timeout=10),
        lambda reply: reply.status_code == 200, timeout_s=timeout_s, every_s=0, what=f"{account}'s balances")
    return dict(reply.json()["balances"])


def bob_sells_alice_one_share(platform: QtUp) -> None:
    """Bob rests one AAPL share, Alice takes it (each retried while the mesh recovers): both complete."""
    sell = until_ok(platform, "order", "place", "bob", "AAPL", "SELL", "1", "--price", "187.45")
    assert sell.returncode == 0 and "completed" in sell.stdout, sell.stdout + sell.stderr
    buy = until_ok(platform, "order", "place", "alice", "AAPL", "BUY", "1", "--price", "187.45")
    assert buy.returncode == 0 and "completed" in buy.stdout, buy.stdout + buy.stderr
    assert available(platform, "alice", "AAPL") == "1.0000"
    assert available(platform, "bob", "AAPL") == "2.0000"
