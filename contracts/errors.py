"""Error codes of the mesh: one code, one meaning, one HTTP status."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Any, Final


class ErrorCode(StrEnum):
    """Machine-readable error codes carried in `Nats-Service-Error-Code` and bodies."""

    BAD_PAYLOAD = "bad_payload"  # not decodable as JSON or msgpack, or not an object
    PAYLOAD_TOO_LARGE = "payload_too_large"
    VALIDATION = "validation_error"  # schema: missing/unknown field, wrong type
    INVALID_AMOUNT = "invalid_amount"
    AMOUNT_OUT_OF_RANGE = "amount_out_of_range"  # above contracts.money.MAX_UNITS, or would push a balance past it
    UNKNOWN_ASSET = "unknown_asset"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    UNKNOWN_HOLD = "unknown_hold"
    HOLD_EXISTS = "hold_exists"
    HOLD_MISMATCH = "hold_mismatch"  # hold belongs to another account/asset
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"  # op_id reused with another payload
    NOT_FOUND = "not_found"
    UNKNOWN_ACCOUNT = "unknown_account"  # the account never held any money
    UNKNOWN_INSTRUMENT = "unknown_instrument"
    UNKNOWN_ORDER = "unknown_order"
    DUPLICATE_ORDER = "duplicate_order_id"
    PRICE_OFF_TICK = "price_off_tick"
    QTY_OFF_STEP = "qty_off_step"
    QTY_BELOW_MIN = "qty_below_min"
    INVALID_PRICE = "invalid_price"
    INVALID_QTY = "invalid_qty"
    MARKET_WITH_PRICE = "market_with_price"
    POST_ONLY_WOULD_TAKE = "post_only_would_take"
    NOT_OWNER = "not_owner"  # the order belongs to another account
    FENCED = "fenced"  # a stale owner (older lease token) tried to act
    WRONG_PARTITION = "wrong_partition"  # the account hashes to another wallet partition than the one asked
    UNAVAILABLE = "unavailable"  # dependency down, breaker open, shutting down
    TIMEOUT = "timeout"
    COMPENSATION_FAILED = "compensation_failed"  # a saga could not be fully undone: parked `failed` for an operator
    INTERNAL = "internal"


HTTP_STATUS: Final[dict[ErrorCode, int]] = {
    ErrorCode.BAD_PAYLOAD: 400,
    ErrorCode.PAYLOAD_TOO_LARGE: 413,
    ErrorCode.VALIDATION: 422,
    ErrorCode.INVALID_AMOUNT: 422,
    ErrorCode.AMOUNT_OUT_OF_RANGE: 422,
    ErrorCode.UNKNOWN_ASSET: 422,
    ErrorCode.INSUFFICIENT_FUNDS: 409,
    ErrorCode.UNKNOWN_HOLD: 404,
    ErrorCode.HOLD_EXISTS: 409,
    ErrorCode.HOLD_MISMATCH: 409,
    ErrorCode.IDEMPOTENCY_CONFLICT: 422,
    ErrorCode.NOT_FOUND: 404,
    ErrorCode.UNKNOWN_ACCOUNT: 404,
    ErrorCode.UNKNOWN_INSTRUMENT: 422,
    ErrorCode.UNKNOWN_ORDER: 404,
    ErrorCode.DUPLICATE_ORDER: 409,
    ErrorCode.PRICE_OFF_TICK: 422,
    ErrorCode.QTY_OFF_STEP: 422,
    ErrorCode.QTY_BELOW_MIN: 422,
    ErrorCode.INVALID_PRICE: 422,
    ErrorCode.INVALID_QTY: 422,
    ErrorCode.MARKET_WITH_PRICE: 422,
    ErrorCode.POST_ONLY_WOULD_TAKE: 409,
    ErrorCode.NOT_OWNER: 403,
    ErrorCode.FENCED: 409,
    ErrorCode.WRONG_PARTITION: 421,
    ErrorCode.UNAVAILABLE: 503,
    ErrorCode.TIMEOUT: 504,
    ErrorCode.COMPENSATION_FAILED: 500,
    ErrorCode.INTERNAL: 500,
}

#: Codes that describe the outcome of a command (recorded against its op_id and replayed);
#: the others say the command never ran.
BUSINESS_CODES: Final[frozenset[ErrorCode]] = frozenset(
    {
        ErrorCode.INSUFFICIENT_FUNDS,
        ErrorCode.UNKNOWN_HOLD,
        ErrorCode.HOLD_EXISTS,
        ErrorCode.HOLD_MISMATCH,
        ErrorCode.UNKNOWN_ACCOUNT,
        ErrorCode.AMOUNT_OUT_OF_RANGE,  # a deposit or credit that would push a balance past the maximum
    }
)


class QtError(Exception):
    """A failure with a contract error code, safe to send to the caller."""

    def __init__(self, code: ErrorCode, message: str, detail: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.detail = detail or {}

    @property
    def http_status(self) -> int:
        """The one HTTP status this code maps to."""
        return HTTP_STATUS[self.code]

    def to_body(self) -> dict[str, Any]:
        """The error body every edge sends: `{code, message, detail}`."""
        return {"code": str(self.code), "message": self.message, "detail": self.detail}

    @classmethod
    def from_body(cls, body: dict[str, Any]) -> QtError:
        """Rebuild an error received over the wire; unknown codes become `internal`."""
        try:
            code = ErrorCode(body.get("code", "internal"))
        except ValueError:
            code = ErrorCode.INTERNAL
        return cls(code, str(body.get("message", "")), dict(body.get("detail") or {}))

    def __repr__(self) -> str:
        return f"QtError({self.code!s}, {self.message!r})"


def validation_error(details: Iterable[Mapping[str, Any]]) -> QtError:
    """Schema failures (pydantic's error details) as every edge reports them: `validation_error`, the
    first failure in the message, all of them in `detail.errors`."""
    errors = [{"loc": ".".join(str(part) for part in e["loc"]), "type": e["type"], "msg": e["msg"]} for e in details]
    first = errors[0] if errors else {"loc": "", "msg": "invalid"}
    return QtError(ErrorCode.VALIDATION, f"{first['loc'] or 'body'}: {first['msg']}", {"errors": errors})
