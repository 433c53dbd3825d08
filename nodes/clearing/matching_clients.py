"""Matching as clearing calls it: each request on its instrument's subject, through its own breaker."""

from __future__ import annotations

from functools import partial
from typing import Any

from nats.aio.client import Client

from contracts.instruments import INSTRUMENTS, instrument
from contracts.subjects import MATCHING_SERVICE, matching_subject
from nodes.runtime.breaker import BreakerRegistry, CircuitBreaker
from nodes.runtime.client import ServiceClient


class MatchingClients:
    """One client and breaker per instrument: an engine that is down opens only the breakers of the
    instruments it owns, so the other engine's instruments keep trading."""

    def __init__(self, nc: Client, breakers: BreakerRegistry, *, timeout_s: float) -> None:
        self.clients = {
            symbol: ServiceClient(nc, MATCHING_SERVICE, timeout_s=timeout_s, subject=partial(matching_subject, symbol),
                                  breaker=breakers.add(CircuitBreaker(f"{MATCHING_SERVICE}.{symbol}")))
            for symbol in INSTRUMENTS
        }

    async def call(self, endpoint: str, body: dict[str, Any], *, idempotent: bool) -> dict[str, Any]:
        """`endpoint` of the instrument `body` names (`unknown_instrument` if it names no listed one)."""
        symbol = instrument(str(body.get("instrument"))).symbol
        return await self.clients[symbol].call(endpoint, body, idempotent=idempotent)
