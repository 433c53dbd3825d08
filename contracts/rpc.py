"""Calling a micro endpoint: encode, request, decode, and turn error replies into `QtError`."""

from __future__ import annotations

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
