"""Liveness and readiness: `/health` answers while the process serves, `/ready` once NATS and the core services do."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final

from fastapi import APIRouter, Depends
from starlette.responses import Response

from contracts.gateway import Health, Readiness
from contracts.subjects import CLEARING_SERVICE, MARKETDATA_SERVICE, MATCHING_SERVICE, WALLET_SERVICE, readiness_probes
from gateway.openapi import doc, schema
from gateway.state import Gateway, gateway, json_response
from mesh.partitions import disagreeing_partitions

router = APIRouter(tags=["health"])
Gw = Annotated[Gateway, Depends(gateway)]
#: Services the gateway cannot take orders without (market data only degrades the market endpoints).
REQUIRED: Final = (WALLET_SERVICE, MATCHING_SERVICE, CLEARING_SERVICE)
OPTIONAL: Final = (MARKETDATA_SERVICE,)
#: The probe that compares `QT_WALLET_PARTITIONS` with the count the wallets announce (`$SRV.INFO`).
PARTITION_COUNT: Final = "wallet partition count"
PROBE_S: Final = 0.5
log = logging.getLogger(__name__)


@router.get("/health", summary="Liveness", **doc(reply=schema(Health), auth=False))
@router.get("/v1/health", include_in_schema=False)
async def health() -> Response:
    """200 while the process serves HTTP; it says nothing about NATS."""
    return json_response(Health(status="ok").model_dump())


@router.get("/ready", summary="Readiness", **doc(reply=schema(Readiness), auth=False, replies={503: schema(Readiness)}))
@router.get("/v1/ready", include_in_schema=False)
async def ready(gw: Gw) -> Response:
    """200 when NATS is connected and every wallet partition, every instrument's engine and clearing
    answer, and the wallets announce the partition count this gateway was told; 503 otherwise (`services`
    names each probe: `wallet p0`, `matching (AAPL)`, `clearing`, `wallet partition count`, ...)."""
    partitions = gw.settings.wallet_partitions
    required = readiness_probes(REQUIRED, partitions)
    probes = {**required, **readiness_probes(OPTIONAL, partitions)}
    if gw.bridge.ready:
        counted = asyncio.ensure_future(disagreeing_partitions(gw.bridge.client(), partitions, timeout_s=PROBE_S))
        answers = await asyncio.gather(*(gw.bridge.answers(subject) for subject in probes.values()))
        other = await counted
    else:
        answers, other = [False] * len(probes), None
    services = dict(zip(probes, answers, strict=True))
    # Told another count than the wallets', this gateway would send some accounts to a partition that
    # refuses them (421): not ready, rather than serving half the accounts.
    services[PARTITION_COUNT] = other is None
    if other is not None:
        log.warning("wallet partition count mismatch: gateway=%d wallets=%d", partitions, other)
    ok = gw.bridge.ready and services[PARTITION_COUNT] and all(services[label] for label in required)
    body = Readiness(status="ready" if ok else "not_ready", nats=gw.bridge.ready, services=services)
    return json_response(body.model_dump(), 200 if ok else 503)
