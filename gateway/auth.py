"""Bearer-token authentication as plain ASGI middleware, and the dependencies routes ask it through.

A request without `Authorization` goes on anonymous (public routes serve it, the others refuse it);
one whose token fails verification is refused here, before any route or account bucket sees it (the
client IP's bucket, outside this middleware, has already charged it).
"""

from __future__ import annotations

from typing import Final

from fastapi import Request
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.gateway import GatewayCode
from gateway.problems import Problem
from gateway.tokens import Principal, TokenVerifier

PRINCIPAL_KEY: Final = "qt.principal"
#: WebSocket close code for a refused token (the 4000 range is the application's; 4401 echoes HTTP 401).
WS_UNAUTHORIZED: Final = 4401


class AuthMiddleware:
    """Verify `Authorization: Bearer <jwt>` when present and put the principal in the scope."""

    def __init__(self, app: ASGIApp, verifier: TokenVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        header = Headers(scope=scope).get("authorization")
        if header is not None:
            try:
                scope[PRINCIPAL_KEY] = self.verifier.verify(bearer_token(header))
            except Problem as problem:
                if scope["type"] == "websocket":
                    await send({"type": "websocket.close", "code": WS_UNAUTHORIZED, "reason": problem.message})
                else:
                    await problem.response(scope["path"])(scope, receive, send)
                return
        await self.app(scope, receive, send)


def bearer_token(header: str) -> str:
    """The token of an `Authorization: Bearer <token>` header."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Problem(GatewayCode.UNAUTHORIZED, "Authorization must be `Bearer <token>`",
                      headers={"WWW-Authenticate": 'Bearer realm="quanttrade"'})
    return token.strip()


# The dependencies are `async def` although they never wait: FastAPI runs a plain `def` dependency on
# its thread pool, a thread hop per dependency per request.
async def principal(request: Request) -> Principal:
    """Dependency: the caller's principal; `unauthorized` without a token."""
    return _principal(request)


async def ops(request: Request) -> Principal:
    """Dependency: an operator's principal; `forbidden` for a trader."""
    who = _principal(request)
    who.require_ops()
    return who


def _principal(request: Request) -> Principal:
    found = request.scope.get(PRINCIPAL_KEY)
    if not isinstance(found, Principal):
        raise Problem(GatewayCode.UNAUTHORIZED, "this endpoint needs a bearer token",
                      headers={"WWW-Authenticate": 'Bearer realm="quanttrade"'})
    return found
