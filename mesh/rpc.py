"""Calling a micro endpoint: encode, request, decode, and turn error replies into `QtError`."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Final

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError

from contracts.codec import Wire, encode, loads
from contracts.errors import ErrorCode, QtError

ERROR_CODE_HEADER: Final = "Nats-Service-Error-Code"
ERROR_HEADER: Final = "Nats-Service-Error"
#: The contract's string error code (the micro header carries the numeric status).
QT_ERROR_HEADER: Final = "Qt-Error"
REPLAYED_HEADER: Final = "Qt-Replayed"
#: The micro instance id of the node that answered (on `metrics` replies, which every instance sends).
INSTANCE_HEADER: Final = "Qt-Instance"
#: How much longer than its reply timeout one request may take in all (publishing included).
PUBLISH_GRACE_S: Final = 1.0


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
        # nats.py applies `timeout` only once the request is published; a publish queued behind a flusher
        # that a reconnect left behind (a cluster member died) can wait forever, so bound the whole call.
        # (asyncio.timeout, not wait_for: no extra task per call on the hot path)
        async with asyncio.timeout(timeout + PUBLISH_GRACE_S):
            msg = await nc.request(subject, encode(body, wire), timeout=timeout, headers=headers)
    except NoRespondersError:
        raise QtError(ErrorCode.UNAVAILABLE, f"no responders on {subject}") from None
    except NatsTimeoutError:
        raise QtError(ErrorCode.TIMEOUT, f"no reply on {subject} within {timeout}s") from None
    except TimeoutError:
        raise QtError(ErrorCode.TIMEOUT, f"no reply on {subject} within {timeout}s (publish stalled)") from None
    reply = loads(msg.data) if msg.data else {}
    if msg.headers and ERROR_CODE_HEADER in msg.headers:
        raise QtError.from_body(reply if isinstance(reply, dict) else {})
    return reply


async def gather(nc: Client, subject: str, payload: bytes = b"", wait_s: float = 0.5) -> list[Msg]:
    """Every reply to one request that arrives within `wait_s` (scatter-gather: several responders answer)."""
    inbox = nc.new_inbox()
    replies: list[Msg] = []
    sub = await nc.subscribe(inbox)
    try:
        await nc.publish(subject, payload, reply=inbox)
        await nc.flush()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + wait_s
        while (left := deadline - loop.time()) > 0:
            try:
                replies.append(await sub.next_msg(timeout=left))
            except (TimeoutError, NatsTimeoutError):
                break
    finally:
        await sub.unsubscribe()
    return replies


async def discover(nc: Client, wait_s: float = 0.5) -> list[dict[str, Any]]:
    """Every micro instance's `$SRV.INFO` merged with its `$SRV.STATS` (`{"info", "stats"}`), gathered
    for `wait_s`, sorted by service name and instance id."""
    infos, stats = await asyncio.gather(gather(nc, "$SRV.INFO", wait_s=wait_s), gather(nc, "$SRV.STATS", wait_s=wait_s))
    instances: dict[str, dict[str, Any]] = {}
    for msg in (*infos, *stats):
        try:
            body = json.loads(msg.data)
        except ValueError:
            continue
        if not isinstance(body, dict):
            continue
        kind = "stats" if str(body.get("type", "")).endswith("stats_response") else "info"
        instances.setdefault(str(body.get("id", "")), {})[kind] = body
    return sorted(instances.values(), key=lambda i: (_field(i, "name"), _field(i, "id")))


def _field(instance: dict[str, Any], name: str) -> str:
    return str((instance.get("info") or instance.get("stats") or {}).get(name, ""))


async def subscribed(nc: Client, timeout: int = 5) -> None:
    """Return once the server has applied every subscription `nc` made, so another connection's
    publish reaches them.

    nats.py's `flush` writes its PING straight to the socket, ahead of a SUB still queued for its flusher
    task: the first PONG proves nothing about that SUB. The second PING goes out after the flusher ran
    (it runs while the first one is awaited), and a server answers one connection's commands in order.
    """
    await nc.flush(timeout=timeout)
    await nc.flush(timeout=timeout)
