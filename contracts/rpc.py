"""Calling a micro endpoint: encode, request, decode, and turn error replies into `QtError`."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts.codec import Wire, encode, loads
from contracts.errors import ErrorCode, QtError

ERROR_CODE_HEADER: Final = "Nats-Service-Error-Code"
ERROR_HEADER: Final = "Nats-Service-Error"
#: The contract's string error code (the micro header carries the numeric status).
QT_ERROR_HEADER: Final = "Qt-Error"
REPLAYED_HEADER: Final = "Qt-Replayed"


async def call(
    nc: Client,
    subject: str,
    body: dict[str, Any],
    *,
    wire: Wire = Wire.MSGPACK,
    timeout: float = 5.0,
    headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Send a request and return the decoded reply, raising `QtError` for error replies."""
    try:
        msg = await nc.request(subject, encode(body, wire), timeout=timeout, headers=headers)
    except NoRespondersError:
        raise QtError(ErrorCode.UNAVAILABLE, f"no responders on {subject}") from None
    except NatsTimeoutError:
        raise QtError(ErrorCode.TIMEOUT, f"no reply on {subject} within {timeout}s") from None
    reply = loads(msg.data) if msg.data else {}
    if msg.headers and ERROR_CODE_HEADER in msg.headers:
        raise QtError.from_body(reply if isinstance(reply, dict) else {})
    return reply


async def discover(nc: Client, wait_s: float = 0.5) -> list[dict[str, Any]]:
    """Every micro instance's `$SRV.INFO` merged with its `$SRV.STATS` (`{"info", "stats"}`), gathered
    for `wait_s`, sorted by service name and instance id."""
    inbox = nc.new_inbox()
    replies: list[dict[str, Any]] = []
    sub = await nc.subscribe(f"{inbox}.*")
    try:
        # Several instances answer one request, so collect every reply rather than the first. Each
        # request has its own reply subject: a service may answer a request once (`allow_responses`).
        await nc.publish("$SRV.INFO", b"", reply=f"{inbox}.info")
        await nc.publish("$SRV.STATS", b"", reply=f"{inbox}.stats")
        await nc.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            try:
                msg = await sub.next_msg(timeout=left)
            except (TimeoutError, NatsTimeoutError):
                break
            try:
                body = json.loads(msg.data)
            except ValueError:
                continue
            if isinstance(body, dict):
                replies.append(body)
    finally:
        await sub.unsubscribe()
    instances: dict[str, dict[str, Any]] = {}
    for body in replies:
        kind = "stats" if str(body.get("type", "")).endswith("stats_response") else "info"
        instances.setdefault(str(body.get("id", "")), {})[kind] = body
    return sorted(instances.values(), key=lambda i: (_field(i, "name"), _field(i, "id")))


def _field(instance: dict[str, Any], name: str) -> str:
    return str((instance.get("info") or instance.get("stats") or {}).get(name, ""))
