"""The ASGI app: `create_app(settings)` wires keys, middleware, routes and the NATS bridge together.

Middleware, outermost first: HTTP metrics (every response counted, refusals included), trace context
(every response echoes `traceparent`), the per-IP rate limit (before authentication: a flood of bad
tokens is limited too), authentication (a bad token never reaches a route), the per-account rate limit.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.middleware import Middleware
from starlette.responses import RedirectResponse
from starlette.staticfiles import StaticFiles

from contracts.subjects import MatchingEndpoint, matching_subject
from gateway import openapi, problems
from gateway.auth import AuthMiddleware
from gateway.idempotency import IdempotencyRecords
from gateway.keys import ensure_key_pair, load_public
from gateway.metrics import HttpMetrics, HttpMetricsMiddleware
from gateway.nats_bridge import NatsBridge
from gateway.ratelimit import AccountRateLimitMiddleware, Buckets, IpRateLimitMiddleware, Limiter
from gateway.routes import accounts, health, markets, metrics, ops, orders, sagas
from gateway.settings import Settings
from gateway.shared import ACCOUNT_BUCKETS, ACCOUNT_SOCKETS, IP_BUCKETS, IP_SOCKETS, Shared
from gateway.state import Gateway
from gateway.tokens import TokenVerifier
from gateway.tracing import TraceMiddleware
from gateway.ws import Caps, ws_endpoint
from gateway.ws_hub import Hub
from mesh.rpc import call

VERSION = "0.1.0"
#: Where `/docs` loads Swagger UI's assets from (served by the gateway itself).
DOCS_ASSETS = "/docs/assets"
#: The operator and trader console: static HTML/CSS/ES modules in the package, served at `/terminal/`.
CONSOLE_DIR = Path(__file__).parent / "console"
CONSOLE_URL = "/terminal/"


def create_app(settings: Settings, shared: Shared | None = None) -> FastAPI:
    """The gateway app; generates the JWT key pair under the data dir when none is configured. `shared`: this
    process is one worker of several, and every limit and metric is kept across them."""
    public_path = settings.jwt_public_key or ensure_key_pair(settings.data_dir)[1]
    verifier = TokenVerifier(load_public(public_path), issuer=settings.jwt_issuer, audience=settings.jwt_audience,
                             leeway_s=settings.jwt_leeway_s)
    http_metrics = HttpMetrics(shared.metrics_dir if shared else None)
    per_ip: Buckets = Limiter(settings.rate_ip, settings.burst_ip)
    per_account: Buckets = Limiter(settings.rate_account, settings.burst_account)
    caps = Caps(per_account=settings.ws_max_per_account, per_ip=settings.ws_max_per_ip)
    if shared is not None:
        per_ip = shared.limiter(IP_BUCKETS, settings.rate_ip, settings.burst_ip)
        per_account = shared.limiter(ACCOUNT_BUCKETS, settings.rate_account, settings.burst_account)
        caps = Caps(settings.ws_max_per_account, settings.ws_max_per_ip, accounts=shared.counts(ACCOUNT_SOCKETS),
                    ips=shared.counts(IP_SOCKETS))
    bridge = NatsBridge(settings)
    records = IdempotencyRecords(bridge.bucket, wait_s=settings.idempotency_wait_s,
                                 stale_s=max(60.0, 2 * settings.order_timeout_s),
                                 record_delay_s=settings.idempotency_record_delay_s)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        await bridge.start()
        try:
            yield
        finally:
            await records.flush()
            await bridge.stop()

    # Swagger UI's script and stylesheet come from the package, not a CDN: /docs works offline.
    app = FastAPIOffline(
        title="QuantTrade gateway", version=VERSION, lifespan=lifespan, docs_url="/docs", redoc_url=None,
        static_url=DOCS_ASSETS,
        # TraceMiddleware makes the request's SERVER span (the parent of every NATS hop); FastAPI's own
        # would be a second one beside it. Its dependency/endpoint spans still nest under ours.
        telemetry={"tracing": False, "metrics": False, "logs": False},
        description="HTTP edge of the QuantTrade mesh: money as decimal strings, errors as problem+json.",
        middleware=[
            Middleware(HttpMetricsMiddleware, metrics=http_metrics),
            Middleware(TraceMiddleware),
            Middleware(IpRateLimitMiddleware, per_ip=per_ip),
            Middleware(AuthMiddleware, verifier=verifier),
            Middleware(AccountRateLimitMiddleware, per_account=per_account),
        ],
    )
    app.state.gateway = Gateway(settings, bridge, records)
    app.state.http_metrics = http_metrics
    for module in (health, accounts, orders, sagas, markets, ops):
        app.include_router(module.router)
    app.include_router(metrics.router)
    hubs: list[Hub] = []

    def hub_of() -> Hub:
        # made on first use: it needs the NATS connection the lifespan opens
        if not hubs:
            hubs.append(Hub(bridge.client(), lambda symbol: book_snapshot(bridge, symbol)))
        return hubs[0]

    app.add_api_websocket_route("/v1/ws", ws_endpoint(hub_of, verifier.verify, caps))
    _mount_console(app)
    problems.install(app)
    openapi.install(app)
    return app


def _mount_console(app: FastAPI) -> None:
    """`/terminal/` serves the console (it speaks only the public /v1 API); `/` and `/terminal` lead there."""

    async def to_console() -> RedirectResponse:
        return RedirectResponse(CONSOLE_URL)

    app.add_api_route("/", to_console, include_in_schema=False)
    app.add_api_route("/terminal", to_console, include_in_schema=False)
    app.mount(CONSOLE_URL.rstrip("/"), StaticFiles(directory=CONSOLE_DIR, html=True), name="console")


async def book_snapshot(bridge: NatsBridge, symbol: str) -> dict[str, Any]:
    """The engine's whole L2 book (integer units) for a WebSocket mirror to start from."""
    return await call(bridge.client(), matching_subject(symbol, MatchingEndpoint.BOOK),
                      {"instrument": symbol, "depth": 500}, timeout=5)

