"""`/metrics`: every node's Prometheus metrics in one scrape, each sample labelled with its `node`."""

from __future__ import annotations

import asyncio
import re
from typing import Annotated, Final

from fastapi import APIRouter, Depends, Response

from contracts.subjects import CLEARING_SERVICE, MARKETDATA_SERVICE, MATCHING_SERVICE, WALLET_SERVICE
from gateway.auth import ops
from gateway.state import Gateway, gateway
from gateway.tokens import Principal

router = APIRouter(tags=["ops"])
NODES: Final = (WALLET_SERVICE, MATCHING_SERVICE, CLEARING_SERVICE, MARKETDATA_SERVICE)
_SAMPLE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?(.*)$")


def relabel(text: str, node: str) -> str:
    """Add `node="<node>"` to every sample line; comments (HELP/TYPE) pass unchanged."""
    out = []
    for line in text.splitlines():
        match = None if not line or line.startswith("#") else _SAMPLE.match(line)
        if match is None:
            out.append(line)
            continue
        name, labels, rest = match.groups()
        inner = labels[1:-1] if labels else ""
        out.append(f'{name}{{node="{node}"{"," + inner if inner else ""}}}{rest}')
    return "\n".join(out)


@router.get("/metrics", summary="Prometheus metrics of every node (ops)")
async def metrics(_: Annotated[Principal, Depends(ops)], gw: Annotated[Gateway, Depends(gateway)]) -> Response:
    """One instance of each node answers its `metrics` endpoint; a node that does not is left out."""
    nc = gw.bridge.client()

    async def scrape(node: str) -> str:
        try:
            reply = await nc.request(f"{node}.metrics", b"", timeout=2)
        except Exception:  # a node that is down is absent from the scrape, as Prometheus expects
            return f"# node {node} did not answer"
        return relabel(reply.data.decode(), node)

    parts = await asyncio.gather(*(scrape(node) for node in NODES))
    return Response("\n".join(parts) + "\n", media_type="text/plain; version=0.0.4")
