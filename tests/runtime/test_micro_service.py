"""Every node is a `nats micro` service: discoverable, with stats, errors and Prometheus metrics."""

from __future__ import annotations

import json

from nats.aio.client import Client

from contracts.subjects import WALLET_ENDPOINTS
from tests.conftest import InProcessWallet
from tests.wallet.client import new_account, wallet_call


async def test_info_lists_every_endpoint_under_the_service_subject(nc: Client, wallet: InProcessWallet) -> None:
    info = json.loads((await nc.request("$SRV.INFO.wallet", b"", timeout=2)).data)

    assert info["name"] == "wallet"
    assert {e["subject"] for e in info["endpoints"]} == {f"wallet.{name}" for name in WALLET_ENDPOINTS}


async def test_stats_count_requests_and_refusals(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("stats")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:1")
    await nc.request("wallet.deposit", b'{"account": 1}', timeout=2)

    stats = json.loads((await nc.request("$SRV.STATS.wallet", b"", timeout=2)).data)
    deposit = next(e for e in stats["endpoints"] if e["name"] == "deposit")

    assert deposit["num_requests"] == 2
    assert deposit["num_errors"] == 1
    assert "validation_error" in deposit["last_error"]


async def test_metrics_endpoint_serves_prometheus_text(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("metrics")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:1")

    text = (await nc.request("wallet.metrics", b"", timeout=2)).data.decode()

    assert 'qt_requests_total{endpoint="deposit",outcome="ok"} 1.0' in text
    assert 'qt_request_seconds_bucket{endpoint="deposit",le="0.0005"}' in text
