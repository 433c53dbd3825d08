"""What every route shares: settings, the NATS bridge, the idempotency records, and how replies become responses."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from pydantic import BaseModel
from starlette.responses import Response

from gateway.idempotency import IdempotencyRecords, Outcome
from gateway.nats_bridge import NatsBridge
from gateway.payload import fingerprint
from gateway.problems import encode_json
from gateway.settings import Settings
from gateway.tokens import Principal
from gateway.tracing import trace_headers


@dataclass
class Gateway:
    """The app's shared parts, reachable from a route as `Depends(gateway)`."""

    settings: Settings
    bridge: NatsBridge
    records: IdempotencyRecords

    async def call(self, request: Request, subject: str, body: BaseModel | dict[str, Any], *,
                   timeout: float | None = None, reply: type[BaseModel] | None = None) -> dict[str, Any]:
        """A NATS request carrying this HTTP request's trace context (`reply`: see `NatsBridge.call`)."""
        return await self.bridge.call(subject, body, trace_headers(request.scope), timeout=timeout, reply=reply)

    async def query(self, request: Request, subject: str, body: BaseModel | dict[str, Any]) -> Response:
        """A read: the node's JSON reply passes through as the response body."""
        return json_response(await self.call(request, subject, body))

    async def once(self, request: Request, who: Principal, key: str, account: str, body: dict[str, Any],
                   execute: Callable[[], Awaitable[Outcome]], *, deduped: bool = False) -> Response:
        """A mutation under the request's Idempotency-Key, scoped by principal and acted-on `account`
        (fingerprint: method, path + query, account, body); `deduped`: see `IdempotencyRecords.run`."""
        where = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return await self.records.run(who, account, key, fingerprint(request.method, where, account, body),
                                      request.url.path, execute, deduped=deduped)

    def forward(self, request: Request, subject: str, command: BaseModel, *, status: int = 200,
                headers: dict[str, str] | None = None, timeout: float | None = None,
                shape: Callable[[dict[str, Any]], Any] | None = None,
                reply: type[BaseModel] | None = None) -> Callable[[], Awaitable[Outcome]]:
        """The execution of a mutation: call the node (on msgpack when its `reply` model is given), keep
        its reply (cut down by `shape`, e.g. to the client's side of its fills) as the outcome to record."""

        async def execute() -> Outcome:
            answer = await self.call(request, subject, command, timeout=timeout, reply=reply)
            return Outcome(status, encode_json(answer if shape is None else shape(answer)), headers=dict(headers or {}))

        return execute


async def gateway(request: Request) -> Gateway:
    """Dependency: the app's `Gateway` (`async`: a plain `def` dependency would cost a thread hop)."""
    found: Gateway = request.app.state.gateway
    return found


def json_response(body: Any, status: int = 200) -> Response:
    """A compact JSON response."""
    return Response(encode_json(body), status, media_type="application/json")
