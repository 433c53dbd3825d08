"""Token-bucket rate limits per account and per client IP, as plain ASGI middleware.

Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (of the
tighter bucket); a refused one is `429` with `Retry-After` as well.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.gateway import GatewayCode
from gateway.auth import PRINCIPAL_KEY
from gateway.problems import Problem
from gateway.tokens import Principal

#: Paths probes and docs use; limiting them would turn an overload into a failed health check.
UNLIMITED: Final = frozenset({"/health", "/ready", "/v1/health", "/v1/ready", "/docs", "/openapi.json"})
#: Buckets kept before idle (full) ones are forgotten, so many distinct IPs cannot grow memory forever.
MAX_BUCKETS: Final = 10_000


@dataclass
class Decision:
    """One bucket's answer: allowed or not, and what the headers say."""

    allowed: bool
    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int


class TokenBucket:
    """`rate` tokens per second up to `burst`; the caller passes the time, so tests drive it directly."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def take(self, now: float) -> Decision:
        """Spend one token if there is one."""
        self.refill(now)
        allowed = self.tokens >= 1
        if allowed:
            self.tokens -= 1
        missing = max(0.0, 1 - self.tokens)
        return Decision(allowed, int(self.burst), int(self.tokens), math.ceil((self.burst - self.tokens) / self.rate),
                        max(1, math.ceil(missing / self.rate)))

    def refill(self, now: float) -> None:
        """Add what accrued since the last look."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def full(self, now: float) -> bool:
        """True when the bucket would be full at `now` (it can be forgotten and recreated)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class Limiter:
    """A bucket per key, created full on first sight."""

    def __init__(self, rate: float, burst: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.buckets: dict[str, TokenBucket] = {}

    def take(self, key: str) -> Decision:
        """Spend one of `key`'s tokens."""
        now = self.clock()
        bucket = self.buckets.get(key)
        if bucket is None:
            if len(self.buckets) >= MAX_BUCKETS:
                self.buckets = {k: b for k, b in self.buckets.items() if not b.full(now)}
            bucket = self.buckets[key] = TokenBucket(self.rate, self.burst, now)
        return bucket.take(now)


class RateLimitMiddleware:
    """Charge the client IP's bucket, and the account's when a token was verified; refuse with 429."""

    def __init__(self, app: ASGIApp, *, per_account: Limiter, per_ip: Limiter) -> None:
        self.app = app
        self.per_account = per_account
        self.per_ip = per_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in UNLIMITED:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        decisions = [self.per_ip.take(f"ip:{client[0] if client else 'unknown'}")]
        who = scope.get(PRINCIPAL_KEY)
        if isinstance(who, Principal):
            decisions.append(self.per_account.take(who.account))
        refused = [d for d in decisions if not d.allowed]
        tightest = max(refused, key=lambda d: d.retry_after_s) if refused else min(decisions, key=lambda d: d.remaining)
        headers = {"RateLimit-Limit": str(tightest.limit), "RateLimit-Remaining": str(tightest.remaining),
                   "RateLimit-Reset": str(tightest.reset_s)}
        if refused:
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1013, "reason": "rate limited"})
                return
            headers["Retry-After"] = str(tightest.retry_after_s)
            problem = Problem(GatewayCode.RATE_LIMITED, f"too many requests; retry in {tightest.retry_after_s}s",
                              {"retry_after_s": tightest.retry_after_s}, headers=headers)
            await problem.response(scope["path"])(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message).update(headers)
            await send(message)

        await self.app(scope, receive, send_with_headers)
