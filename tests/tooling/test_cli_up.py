"""`qt up` end to end: real nats-server and wallet processes, driven by the `qt` CLI."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

import pytest

from contracts.subjects import wallet_partition
from tests.polling import eventually_sync
from tests.tooling.harness import QT, STARTED, QtUp, alive, usd_available
from tooling.natsserver import free_port


def next_start(platform: QtUp, name: str, old_pid: int) -> int:
    """The PID of the next `[qt] <name> started (pid N)` line with a PID other than `old_pid`."""
    while True:
        match = platform.wait_for(STARTED)
        if match.group(1) == name and int(match.group(2)) != old_pid:
            return int(match.group(2))


def answer_after_restart(platform: QtUp, timeout_s: float = 30.0) -> subprocess.CompletedProcess[str]:
    """Poll `qt wallet balance alice` until the restarted wallet answers."""
    return eventually_sync(lambda: platform.qt("wallet", "balance", "alice"), lambda result: result.returncode == 0,
                           timeout_s=timeout_s, every_s=0, what="the restarted wallet answering")


@pytest.mark.slow
def test_up_wallet_commands_restart_and_clean_stop(tmp_path: Path, platforms: list[QtUp]) -> None:
    platform = QtUp(tmp_path / "data").start()
    platforms.append(platform)
    nats_pid, nodes = platform.wait_ready()
    assert {"wallet-p0", "wallet-p1"} <= set(nodes), nodes  # two wallet partitions, each supervised

    first = platform.qt("wallet", "deposit", "alice", "USD", "12.34", "--op-id", "t1")
    assert first.returncode == 0, first.stderr
    assert usd_available(platform) == "12.34"
    again = platform.qt("wallet", "deposit", "alice", "USD", "12.34", "--op-id", "t1")
    assert again.returncode == 0, again.stderr
    assert usd_available(platform) == "12.34"

    for amount in ("1e3", "-5", "1.001"):
        refused = platform.qt("wallet", "deposit", "alice", "USD", amount)
        assert refused.returncode == 1, (amount, refused.stdout, refused.stderr)
        assert refused.stderr.startswith("error invalid_amount: "), refused.stderr
        assert "Traceback" not in refused.stderr
    assert usd_available(platform) == "12.34"

    services = platform.qt("services")
    assert services.returncode == 0, services.stderr
    assert "wallet.p0.deposit" in services.stdout and "wallet.p1.deposit" in services.stdout
    # two engines, each listing only its own instruments' endpoints (`engine_instruments`)
    assert {"matching", "matching2"} <= set(nodes)
    assert "matching.AAPL.submit" in services.stdout and "matching.BTC-USD.submit" in services.stdout
    streams = platform.qt("streams")
    assert streams.returncode == 0, streams.stderr
    assert "WALLET" in streams.stdout and "leases" in streams.stdout
    assert "wallet.p0" in streams.stdout and "wallet.p1" in streams.stdout

    old = nodes[f"wallet-p{wallet_partition('alice', 2)}"]  # the partition that holds alice's money
    os.kill(old, signal.SIGKILL)
    new = next_start(platform, f"wallet-p{wallet_partition('alice', 2)}", old)
    restarted = answer_after_restart(platform)
    assert restarted.returncode == 0, restarted.stderr
    assert usd_available(platform) == "12.34"
    assert alive(new) and not alive(old)

    engine = nodes["matching2"]  # owns BTC-USD: the supervisor restarts it with the same instruments
    os.kill(engine, signal.SIGKILL)
    engine_again = next_start(platform, "matching2", engine)
    book = eventually_sync(lambda: platform.qt("book", "BTC-USD"), lambda result: result.returncode == 0,
                           timeout_s=30, every_s=0, what="BTC-USD served again")
    assert "BTC-USD" in book.stdout

    assert platform.interrupt(timeout_s=30) == 0
    for pid in (nats_pid, *nodes.values(), new, engine_again):
        assert not alive(pid), (pid, platform.output)


@pytest.mark.slow
def test_seed_is_idempotent_across_restarts(tmp_path: Path, platforms: list[QtUp]) -> None:
    data = tmp_path / "data"
    first = QtUp(data, seed=True).start()
    platforms.append(first)
    first.wait_ready()
    assert usd_available(first) == "100000.00"
    assert usd_available(first, "carol") == "100000.00"
    book = first.qt("book", "AAPL", "--depth", "15")
    # 15 levels a side of 50 shares; the seeded trades took 30 from each side's best level
    assert book.returncode == 0 and book.stdout.count("50.0000") == 28 and book.stdout.count("20.0000") == 2, \
        book.stdout
    assert first.interrupt() == 0

    second = QtUp(data, seed=True).start()
    platforms.append(second)
    second.wait_ready()
    assert usd_available(second) == "100000.00"
    balance = second.qt("wallet", "balance", "bob")
    assert "2.00000000" in balance.stdout and "100.0000" in balance.stdout
    assert second.interrupt() == 0


def test_unreachable_nats_is_one_line_error(tmp_path: Path) -> None:
    env = dict(os.environ, QT_NATS_URL=f"nats://127.0.0.1:{free_port()}", QT_DATA_DIR=str(tmp_path))
    result = subprocess.run([QT, "wallet", "balance", "alice"], check=False, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.startswith("error unavailable: cannot reach NATS"), result.stderr
    assert "Traceback" not in result.stderr
