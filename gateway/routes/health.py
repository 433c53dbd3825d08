"""Liveness and readiness: `/health` answers while the process serves, `/ready` once NATS and the core services do."""

from __future__ import annotations

import asyncio
from typing import Annotated, Final

from fastapi import APIRouter, Depends
from starlette.responses import Response

from contracts.gateway import Health, Readiness
from contracts.subjects import CLEARING_SERVICE, MARKETDATA_SERVICE, MATCHING_SERVICE, WALLET_SERVICE, readiness_probes
from gateway.openapi import doc, schema
from gateway.state import Gateway, gateway, json_response

router = APIRouter(tags=["health"])
Gw = Annotated[Gateway, Depends(gateway)]
#: Services the gateway cannot take orders without (market data only degrades the market endpoints).
REQUIRED: Final = (WALLET_SERVICE, MATCHING_SERVICE, CLEARING_SERVICE)
OPTIONAL: Final = (MARKETDATA_SERVICE,)


@router.get("/health", summary="Liveness", **doc(reply=schema(Health), auth=False))
@router.get("/v1/health", include_in_schema=False)
async def health() -> Response:
    """200 while the process serves HTTP; it says nothing about NATS."""
    return json_response(Health(status="ok").model_dump())


@router.get("/ready", summary="Readiness", **doc(reply=schema(Readiness), auth=False, replies={503: schema(Readiness)}))
@router.get("/v1/ready", include_in_schema=False)
async def ready(gw: Gw) -> Response:
    """200 when NATS is connected and every wallet partition, every instrument's engine and clearing
    answer; 503 otherwise (`services` names each probe: `wallet p0`, `matching (AAPL)`, `clearing`, ...)."""
    required = readiness_probes(REQUIRED, gw.settings.wallet_partitions)
    probes = {**required, **readiness_probes(OPTIONAL, gw.settings.wallet_partitions)}
    if gw.bridge.ready:
        answers = await asyncio.gather(*(gw.bridge.answers(subject) for subject in probes.values()))
    else:
        answers = [False] * len(probes)
    services = dict(zip(probes, answers, strict=True))
    ok = gw.bridge.ready and all(services[label] for label in required)
    body = Readiness(status="ready" if ok else "not_ready", nats=gw.bridge.ready, services=services)
    return json_response(body.model_dump(), 200 if ok else 503)
