"""Liveness and readiness: `/health` answers while the process serves, `/ready` once NATS and the core services do."""

from __future__ import annotations

import asyncio
from typing import Annotated, Final

from fastapi import APIRouter, Depends
from starlette.responses import Response

from contracts.gateway import Health, Readiness
from contracts.subjects import CLEARING_SERVICE, MARKETDATA_SERVICE, MATCHING_SERVICE, WALLET_SERVICE
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
    """200 when NATS is connected and wallet, matching and clearing answer PING; 503 otherwise."""
    names = (*REQUIRED, *OPTIONAL)
    if gw.bridge.ready:
        answers = await asyncio.gather(*(gw.bridge.ping(n) for n in names))
    else:
        answers = [False] * len(names)
    services = dict(zip(names, answers, strict=True))
    ok = gw.bridge.ready and all(services[n] for n in REQUIRED)
    body = Readiness(status="ready" if ok else "not_ready", nats=gw.bridge.ready, services=services)
    return json_response(body.model_dump(), 200 if ok else 503)
