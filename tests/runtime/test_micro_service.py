"""Every node is a `nats micro` service: discoverable, with stats, errors and Prometheus metrics."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Final

from nats.aio.client import Client
from pydantic import BaseModel

from contracts.codec import Wire
from contracts.subjects import WALLET_ENDPOINTS, wallet_subject
from mesh.rpc import INSTANCE_HEADER, call, gather
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.service import NodeService
from tests.conftest import InProcessWallet
from tests.wallet.client import new_account, wallet_call

NAP_S: Final = 0.05


async def test_info_lists_every_endpoint_under_the_partition_subject(nc: Client, wallet: InProcessWallet) -> None:
    info = json.loads((await nc.request("$SRV.INFO.wallet", b"", timeout=2)).data)

    assert info["name"] == "wallet"
    assert info["metadata"] == {"partition": "0", "partitions": "1"}
    # every endpoint under its partition's prefix; metrics where a scrape hears every instance
    assert {e["subject"] for e in info["endpoints"]} == {
        "wallet.metrics" if name == "metrics" else wallet_subject(name, 0) for name in WALLET_ENDPOINTS}


async def test_stats_count_requests_and_refusals(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("stats")
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:1")
    await nc.request("wallet.p0.deposit", b'{"account": 1}', timeout=2)

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


class Nap(BaseModel):
    """How long the test handler sleeps before it answers."""

    seconds: float


async def test_stats_time_the_handler_not_its_dispatch(nc: Client) -> None:
    # micro times only its callback, which spawns the handler task and returns in microseconds
    name = f"nap-{uuid.uuid4().hex[:8]}"
    service = NodeService(nc, name=name, version="0.0.1", description="timing test", metrics=NodeMetrics(name))

    @service.route("nap", Nap)
    async def nap(command: Nap) -> dict[str, bool]:
        await asyncio.sleep(command.seconds)
        return {"ok": True}

    await service.start()
    try:
        await asyncio.gather(*(call(nc, f"{name}.nap", {"seconds": NAP_S}, wire=Wire.JSON) for _ in range(3)))
        stats = json.loads((await nc.request(f"$SRV.STATS.{name}", b"", timeout=2)).data)
    finally:
        await service.stop()
    endpoint = next(e for e in stats["endpoints"] if e["name"] == "nap")

    assert endpoint["num_requests"] == 3
    assert endpoint["average_processing_time"] >= NAP_S * 1e9
    assert endpoint["processing_time"] >= 3 * NAP_S * 1e9


async def test_every_instance_answers_a_metrics_scrape(nc: Client) -> None:
    name = f"twin-{uuid.uuid4().hex[:8]}"
    twins = [NodeService(nc, name=name, version="0.0.1", description="twin", metrics=NodeMetrics(name))
             for _ in range(2)]
    for twin in twins:
        await twin.start()
    try:
        replies = await gather(nc, f"{name}.metrics", wait_s=1.0)
    finally:
        for twin in twins:
            await twin.stop()

    assert sorted(r.headers[INSTANCE_HEADER] for r in replies if r.headers) == sorted(t.instance_id for t in twins)
