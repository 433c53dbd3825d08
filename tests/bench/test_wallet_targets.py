"""`qt bench wallet` judging: deposits/s at 64 clients and p99 at 1,000/s, each beside the echo peer of the same run."""

from __future__ import annotations

from tooling.bench.stats import Run
from tooling.bench.tables import nats_sections
from tooling.bench.wallet import NatsPlan, NatsResults


def _results(deposits: float, echo: float, p99: float) -> NatsResults:
    res = NatsResults()
    for clients in (1, 16, 64):
        res.closed[("FULL", clients)] = Run("w", int(deposits * clients / 64), 0, 1.0, 0.001, 0.002, 0.003)
        res.closed[("echo", clients)] = Run("e", int(echo * clients / 64), 0, 1.0, 0.0001, 0.0002, 0.0003)
    res.open[("FULL", 1000.0)] = Run("w", 5000, 0, 5.0, 0.001, p99, p99)
    res.open[("echo", 1000.0)] = Run("e", 5000, 0, 5.0, 0.0001, 0.0005, 0.0005)
    return res


def test_deposits_are_judged_at_64_clients_against_10k_with_the_echo_peer_beside_them() -> None:
    _, targets = nats_sections(NatsPlan(syncs=("FULL",), open_rates=(1000.0,)), _results(1_779.0, 12_975.0, 0.050))
    deposits, p99 = targets
    assert deposits.name == "durable deposits/s over NATS, 64 clients (FULL)"
    assert not deposits.met and deposits.by == "0.18x"
    assert "echo peer req/s 12,975/s in this run: ours 0.14x" in deposits.ours
    assert p99.name == "p99 at 1,000 deposits/s offered, open loop (FULL)"
    assert not p99.met and p99.by == "10.00x" and "echo peer p99 0.500 ms in this run" in p99.ours
    assert deposits.see and p99.see


def test_a_wallet_on_target_meets_both() -> None:
    _, targets = nats_sections(NatsPlan(syncs=("FULL",), open_rates=(1000.0,)), _results(12_000.0, 13_000.0, 0.004))
    assert [t.met for t in targets] == [True, True]


def test_a_run_without_64_clients_or_1000_per_second_says_not_measured() -> None:
    res = _results(12_000.0, 13_000.0, 0.004)
    del res.closed[("FULL", 64)]
    _, targets = nats_sections(NatsPlan(clients=(1, 16), syncs=("FULL",), open_rates=(250.0,)), res)
    assert [t.met for t in targets] == [False, False]
    assert all(t.ours.startswith("not measured") for t in targets)
