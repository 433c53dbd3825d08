"""`qt up` waits for every wallet partition and every instrument's engine, not for any wallet or engine:
seeding alice on a partition that is not up yet would leave her without money while `qt up` says ready."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.instruments import INSTRUMENTS
from contracts.subjects import readiness_probes
from tooling.up import child_specs


def test_each_wallet_partition_is_probed_on_its_own_subject() -> None:
    probes = readiness_probes(["wallet", "matching", "clearing"], 2)

    assert probes == {"wallet p0": "wallet.p0.balance", "wallet p1": "wallet.p1.balance",
                      **{f"matching ({symbol})": f"matching.{symbol}.status" for symbol in INSTRUMENTS},
                      "clearing": "$SRV.PING.clearing"}


def test_qt_up_runs_one_wallet_process_per_partition_and_tells_every_node_the_count(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("QT_WALLET_PARTITIONS", raising=False)  # qt up's own default: 2
    specs = child_specs([("wallet", "nodes.wallet"), ("clearing", "nodes.clearing")], "nats://127.0.0.1:1",
                        tmp_path)

    assert [s.name for s in specs] == ["wallet-p0", "wallet-p1", "clearing", "clearing2"]
    assert [s.env.get("QT_WALLET_PARTITION") for s in specs[:2]] == ["0", "1"]
    assert {s.env["QT_WALLET_PARTITIONS"] for s in specs} == {"2"}
