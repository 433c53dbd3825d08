"""`qt up --cluster 3`: three nats-servers in one cluster, every stream and bucket R3, and the platform
keeps taking money and orders when one server is SIGKILLed."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from tests.tooling.harness import NATS_STARTED, QtUp, alive, free_port_run
from tests.tooling.test_up_nats_restart import bob_sells_alice_one_share, gateway_balances


@pytest.mark.slow
def test_cluster_of_three_keeps_working_when_a_server_dies(tmp_path: Path, platforms: list[QtUp]) -> None:
    platform = QtUp(tmp_path / "data", cluster=3, port=free_port_run(3), monitor_port=free_port_run(3),
                    cluster_port=free_port_run(3)).start()
    platforms.append(platform)
    _, nodes = platform.wait_ready()
    assert {"matching", "matching2"} <= set(nodes)  # the instruments split over two engines
    servers = platform.nats_pids()
    assert len(servers) == 3 and all(alive(pid) for pid in servers)
    replicas = platform.qt("req", "$JS.API.STREAM.INFO.ORDERS", "{}")
    assert json.loads(replicas.stdout)["config"]["num_replicas"] == 3, replicas.stdout
    for account, asset, amount in (("alice", "USD", "1000.00"), ("bob", "AAPL", "3.0000")):
        done = platform.qt("wallet", "deposit", account, asset, amount)
        assert done.returncode == 0, done.stderr

    os.kill(servers[0], signal.SIGKILL)  # one member, by the PID qt up printed

    bob_sells_alice_one_share(platform)
    assert gateway_balances(platform, "alice")["USD"]["held"] == "0.00"
    restarted = int(platform.wait_for(NATS_STARTED, timeout_s=60).group(1))  # qt up brings the member back
    assert restarted not in servers and alive(restarted)
    assert platform.interrupt() == 0
