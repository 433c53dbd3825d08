"""`qt bench wallet`'s partitions table: each partition count's deposits/s beside one partition's, same run."""

from __future__ import annotations

from contracts.subjects import wallet_account_subject
from tooling.bench.stats import Run
from tooling.bench.tables import partitions_section
from tooling.bench.wallet import NatsPlan, NatsResults, account_of, deposit_subject


def test_the_table_gives_rate_latency_and_the_ratio_to_one_partition() -> None:
    results = NatsResults()
    results.partitioned[1] = Run("1 partition", 10_000, 0, 5.0, 0.020, 0.050)
    results.partitioned[2] = Run("2 partitions", 15_000, 1, 5.0, 0.015, 0.040)
    results.partitioned_cpu[2] = {"wallets": 1.1, "nats-server": 0.5, "client": 0.3}

    section = partitions_section(NatsPlan(clients=(1, 64), partitions=2), results)

    assert "64 clients" in section.title
    assert section.rows == [
        ["1", "2,000/s", "1.00x", "20.00 ms", "50.00 ms", "0", "-", "-", "-"],
        ["2", "3,000/s", "1.50x", "15.00 ms", "40.00 ms", "1", "1.10", "0.50", "0.30"],
    ]


def test_a_run_without_the_one_partition_figure_has_no_ratio() -> None:
    results = NatsResults()
    results.partitioned[2] = Run("2 partitions", 15_000, 0, 5.0, 0.015, 0.040)

    section = partitions_section(NatsPlan(partitions=2), results)

    assert section.rows[0][:3] == ["2", "3,000/s", "-"]


def test_deposits_go_to_the_partition_of_their_account() -> None:
    route = deposit_subject(2)
    pairs = [(c, i) for c in range(64) for i in range(20)]

    assert all(route(c, i) == wallet_account_subject("deposit", account_of(c, i), 2) for c, i in pairs)
    assert {route(c, i) for c, i in pairs} == {"wallet.p0.deposit", "wallet.p1.deposit"}  # the clients reach both
    assert {deposit_subject(1)(c, i) for c, i in pairs} == {"wallet.p0.deposit"}
