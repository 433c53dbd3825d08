"""The gateway's HTTP vocabulary: roles, header names, and the error codes only the HTTP edge raises."""

from __future__ import annotations

from enum import StrEnum
from typing import Final

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
