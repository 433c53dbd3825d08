"""`GET /v1/ops/streams`: streams with their consumers' real lag, buckets and the leases held, for ops only."""

from __future__ import annotations

import uuid

import httpx
from nats.js.api import ConsumerConfig, StreamConfig

from contracts.gateway import Role
from contracts.subjects import LEASES_BUCKET
from tests.clearing.platform import Platform
from tests.gateway.harness import GatewayProcess, bearer, problem


async def test_operators_see_consumer_lag_buckets_and_leases(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                            platform: Platform, ops_token: str) -> None:
    js = platform.nc.jetstream()
    name = f"LAG{uuid.uuid4().hex[:8].upper()}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"lagtest.{name}"]))
    try:
        await js.add_consumer(name, ConsumerConfig(durable_name="idle"))
        for n in range(3):  # nobody pulls: the consumer lags by exactly these
            await js.publish(f"lagtest.{name}", str(n).encode())

        reply = await client.get("/v1/ops/streams", headers=bearer(ops_token))
        assert reply.status_code == 200, reply.text
        body = reply.json()
    finally:
        await js.delete_stream(name)

    streams = {s["name"]: s for s in body["streams"]}
    assert {"ORDERS", "EXEC", "WALLET"} <= set(streams)
    mine = streams[name]
    assert (mine["messages"], mine["last_seq"]) == (3, 3)
    assert mine["consumers"] == [{"name": "idle", "pending": 3, "ack_pending": 0, "redelivered": 0}]
    assert "clearing-exec" in {c["name"] for c in streams["EXEC"]["consumers"]}
    assert {"sagas", "idempotency", LEASES_BUCKET} <= {b["name"] for b in body["buckets"]}

    kv = await js.key_value(LEASES_BUCKET)
    held = {lease["key"]: lease for lease in body["leases"]}
    assert "wallet.p0" in held, body["leases"]
    entry = await kv.get("wallet.p0")
    assert 0 < held["wallet.p0"]["token"] <= entry.revision  # the revision it held then; renewals only raise it
    assert held["wallet.p0"]["owner"] and held["wallet.p0"]["pid"]


async def test_traders_may_not_list_streams(client: httpx.AsyncClient, gateway: GatewayProcess) -> None:
    problem(await client.get("/v1/ops/streams", headers=bearer(gateway.token("someone", Role.TRADER))),
            403, "forbidden")
    problem(await client.get("/v1/ops/streams"), 401, "unauthorized")
