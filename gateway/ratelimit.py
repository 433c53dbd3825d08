"""Token-bucket rate limits per client IP (before authentication) and per account (after it), as plain ASGI
middleware.

Every limited response carries `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset` (of the
tighter bucket); a refused one is `429` with `Retry-After` as well.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Protocol

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
#: Where the IP limiter leaves its decision for the account limiter (scope key, like the principal's).
IP_DECISION_KEY: Final = "qt.ip_rate"


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
        """Spend one token if there is one, and say what the rate-limit headers report."""
        allowed = self.spend(now)
        missing = max(0.0, 1 - self.tokens)
        return Decision(allowed, int(self.burst), int(self.tokens), math.ceil((self.burst - self.tokens) / self.rate),
                        max(1, math.ceil(missing / self.rate)))

    def spend(self, now: float) -> bool:
        """Spend one token if there is one; False when the bucket is empty."""
        self.refill(now)
        if self.tokens < 1:
            return False
        self.tokens -= 1
        return True

    def refill(self, now: float) -> None:
        """Add what accrued since the last look."""
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def full(self, now: float) -> bool:
        """True when the bucket would be full at `now` (it can be forgotten and recreated)."""
        return self.tokens + (now - self.stamp) * self.rate >= self.burst


class Buckets(Protocol):
    """Token buckets by key: `Limiter` in one process, `gateway.shared.SharedLimiter` across workers."""

    def take(self, key: str) -> Decision:
        """Spend one of `key`'s tokens."""
        ...


class Limiter:
    """A bucket per key, created full on first sight (one process's own)."""

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


class IpRateLimitMiddleware:
    """Charge the client IP's bucket before authentication, so a flood of bad tokens is limited like any other.

    Its decision stays in the scope for `AccountRateLimitMiddleware` to weigh against the account's; a
    response that never reached that one (a refused token, a public route) carries the IP's headers.
    """

    def __init__(self, app: ASGIApp, *, per_ip: Buckets) -> None:
        self.app = app
        self.per_ip = per_ip

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in UNLIMITED:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        decision = self.per_ip.take(f"ip:{client[0] if client else 'unknown'}")
        if not decision.allowed:
            await _refuse(decision, scope, receive, send)
            return
        scope[IP_DECISION_KEY] = decision
        await self.app(scope, receive, _with_headers(decision, scope, send, replace=False))


class AccountRateLimitMiddleware:
    """Charge the account's bucket once a token was verified; the headers speak of the tighter bucket."""

    def __init__(self, app: ASGIApp, *, per_account: Buckets) -> None:
        self.app = app
        self.per_account = per_account

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        who = scope.get(PRINCIPAL_KEY)
        if scope["type"] not in ("http", "websocket") or scope["path"] in UNLIMITED or not isinstance(who, Principal):
            await self.app(scope, receive, send)
            return
        ip = scope.get(IP_DECISION_KEY)
        decisions = [*([ip] if isinstance(ip, Decision) else []), self.per_account.take(who.account)]
        refused = [d for d in decisions if not d.allowed]
        if refused:
            await _refuse(max(refused, key=lambda d: d.retry_after_s), scope, receive, send)
            return
        await self.app(scope, receive, _with_headers(min(decisions, key=lambda d: d.remaining), scope, send,
                                                     replace=True))


def _headers(decision: Decision) -> dict[str, str]:
    return {"RateLimit-Limit": str(decision.limit), "RateLimit-Remaining": str(decision.remaining),
            "RateLimit-Reset": str(decision.reset_s)}


def _with_headers(decision: Decision, scope: Scope, send: Send, *, replace: bool) -> Send:
    """`send` adding the decision's RateLimit-* headers (unless an inner limiter already set them); a
    WebSocket's `send` as it is, since it has no response head and every frame would pay the wrapper."""
    if scope["type"] != "http":
        return send
    headers = _headers(decision)

    async def send_with_headers(message: Message) -> None:
        if message["type"] == "http.response.start":
            existing = MutableHeaders(scope=message)
            if replace or "ratelimit-limit" not in existing:
                existing.update(headers)
        await send(message)

    return send_with_headers


async def _refuse(decision: Decision, scope: Scope, receive: Receive, send: Send) -> None:
    """429 with Retry-After (a WebSocket is closed with 1013, try again later)."""
    if scope["type"] == "websocket":
        await send({"type": "websocket.close", "code": 1013, "reason": "rate limited"})
        return
    headers = {**_headers(decision), "Retry-After": str(decision.retry_after_s)}
    problem = Problem(GatewayCode.RATE_LIMITED, f"too many requests; retry in {decision.retry_after_s}s",
                      {"retry_after_s": decision.retry_after_s}, headers=headers)
    await problem.response(scope["path"])(scope, receive, send)
