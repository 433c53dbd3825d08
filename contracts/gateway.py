"""The gateway's HTTP vocabulary: roles, header names, and the error codes only the HTTP edge raises."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Final, Literal

from contracts.base import Message

#: Header every POST/DELETE carries; the first request with a key wins, retries get its response.
IDEMPOTENCY_KEY_HEADER: Final = "Idempotency-Key"
#: Set to `true` on a response served from the idempotency record instead of a new execution.
IDEMPOTENT_REPLAYED_HEADER: Final = "Idempotent-Replayed"
#: Longest Idempotency-Key accepted (printable ASCII, no spaces).
MAX_IDEMPOTENCY_KEY: Final = 255

#: JWT defaults: the `iss` and `aud` every token must carry, the one signature algorithm accepted.
JWT_ISSUER: Final = "quanttrade"
JWT_AUDIENCE: Final = "quanttrade-api"
JWT_ALGORITHM: Final = "EdDSA"
#: Token lifetime: default, and the bounds `qt token --ttl` accepts (1 minute to 7 days).
TOKEN_TTL_S: Final = 3600
TOKEN_TTL_MIN_S: Final = 60
TOKEN_TTL_MAX_S: Final = 7 * 24 * 3600


class Role(StrEnum):
    """What a token may do: a trader acts on its own account; ops on any, and on ops endpoints."""

    TRADER = "trader"
    OPS = "ops"


class GatewayCode(StrEnum):
    """Error codes of the HTTP edge itself (the mesh's codes are `contracts.errors.ErrorCode`)."""

    UNAUTHORIZED = "unauthorized"  # no token, or a token that failed verification
    FORBIDDEN = "forbidden"  # the token's role may not use this endpoint
    RATE_LIMITED = "rate_limited"
    IDEMPOTENCY_KEY_REQUIRED = "idempotency_key_required"  # missing or malformed Idempotency-Key
    IDEMPOTENCY_IN_FLIGHT = "idempotency_in_flight"  # the first request with this key is still running
    METHOD_NOT_ALLOWED = "method_not_allowed"


GATEWAY_HTTP_STATUS: Final[dict[GatewayCode, int]] = {
    GatewayCode.UNAUTHORIZED: 401,
    GatewayCode.FORBIDDEN: 403,
    GatewayCode.RATE_LIMITED: 429,
    GatewayCode.IDEMPOTENCY_KEY_REQUIRED: 400,
    GatewayCode.IDEMPOTENCY_IN_FLIGHT: 409,
    GatewayCode.METHOD_NOT_ALLOWED: 405,
}


class InstrumentView(Message):
    """A listed instrument's trading rules as `GET /v1/markets` shows them: amounts as decimal strings."""

    instrument: str
    base: str
    quote: str
    tick: str
    lot: str
    min_qty: str
    reference_price: str
    fee_bps: int


class InstrumentList(Message):
    """Every listed instrument."""

    instruments: list[InstrumentView]


class Health(Message):
    """`/health`: the process serves HTTP."""

    status: Literal["ok"]


class Readiness(Message):
    """`/ready`: NATS connected and which probes answer, per wallet partition and per instrument (503
    with the same body when not ready)."""

    status: Literal["ready", "not_ready"]
    nats: bool
    services: dict[str, bool]


class EndpointView(Message):
    """One micro endpoint's `$SRV.STATS` (times in nanoseconds, the micro convention)."""

    name: str | None
    subject: str | None
    num_requests: int | None
    num_errors: int | None
    processing_time: int | None
    average_processing_time: int | None
    last_error: str | None


class ServiceInstance(Message):
    """One running instance of a micro service, its endpoints and its circuit breakers."""

    name: str
    id: str
    version: str
    started: str | None
    endpoints: list[EndpointView]
    breakers: dict[str, Any]


class ServicesReply(Message):
    """`GET /v1/services`: every instance, by service name and id."""

    services: list[ServiceInstance]
