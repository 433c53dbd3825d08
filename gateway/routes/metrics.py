"""`/metrics`: the gateway's and every node instance's Prometheus metrics in one scrape (`node`, `instance` labels)."""

from __future__ import annotations

import asyncio
import logging
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Request, Response

from contracts.errors import QtError
from contracts.subjects import CLEARING_SERVICE, MARKETDATA_SERVICE, MATCHING_SERVICE, WALLET_SERVICE
from gateway.auth import ops
from gateway.metrics import CONTENT_TYPE, HttpMetrics, Scrape, merge
from gateway.openapi import doc
from gateway.state import Gateway, gateway
from gateway.tokens import Principal
from mesh.rpc import ERROR_CODE_HEADER, INSTANCE_HEADER, gather

log = logging.getLogger(__name__)
router = APIRouter(tags=["ops"])
NODES: Final = (WALLET_SERVICE, MATCHING_SERVICE, CLEARING_SERVICE, MARKETDATA_SERVICE)
#: How long a scrape listens for replies: every instance answers `<node>.metrics`, and how many there are
#: is unknown, so the window is the wait (generous: a busy instance must not drop out of a scrape).
SCRAPE_WINDOW_S: Final = 1.0


@router.get("/metrics", summary="Prometheus metrics of the gateway and every node instance (ops)",
            **doc(reply={"type": "string"}, media_type=CONTENT_TYPE))
async def metrics(request: Request, _: Annotated[Principal, Depends(ops)],
                  gw: Annotated[Gateway, Depends(gateway)]) -> Response:
    """Every instance of every node answers within the window; one that does not is absent, as Prometheus expects."""
    own: HttpMetrics = request.app.state.http_metrics
    try:
        nc = gw.bridge.client()
    except QtError:  # without NATS the gateway still reports itself
        return Response(merge([own.scrape()]), media_type=CONTENT_TYPE)

    async def scrape(node: str) -> list[Scrape]:
        found = []
        for reply in await gather(nc, f"{node}.metrics", wait_s=SCRAPE_WINDOW_S):
            headers = reply.headers or {}
            if ERROR_CODE_HEADER in headers:
                log.warning("%s.metrics answered an error: %s", node, headers.get(ERROR_CODE_HEADER))
                continue
            found.append(Scrape(node, headers.get(INSTANCE_HEADER) or "unknown", reply.data.decode(errors="replace")))
        return found

    parts = await asyncio.gather(*(scrape(node) for node in NODES))
    return Response(merge([own.scrape(), *(s for part in parts for s in part)]), media_type=CONTENT_TYPE)
