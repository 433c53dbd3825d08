"""Request bodies: bounded reading, strict JSON, contract validation on the JSON wire, and derived ids."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from contracts.codec import MAX_REQUEST_BYTES, Wire, decode, sniff
from contracts.errors import ErrorCode, QtError
from contracts.gateway import IDEMPOTENCY_KEY_HEADER, MAX_IDEMPOTENCY_KEY, GatewayCode
from gateway.idempotency import scoped
from gateway.problems import Problem, validation_problem
from gateway.tokens import Principal

M = TypeVar("M", bound=BaseModel)


async def read_object(request: Request) -> dict[str, Any]:
    """The body as a JSON object (empty body = `{}`); oversize is refused before it is read in full."""
    declared = request.headers.get("content-length")
    if declared is not None and (not declared.isdigit() or int(declared) > MAX_REQUEST_BYTES):
        raise _too_large(declared)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_REQUEST_BYTES:
            raise _too_large(str(size))
        chunks.append(chunk)
    payload = b"".join(chunks)
    if not payload.strip():
        return {}
    if sniff(payload) is not Wire.JSON:  # the codec would read anything else as msgpack
        raise Problem(ErrorCode.BAD_PAYLOAD, "the body must be a JSON object")
    body, _ = decode(payload)  # the codec refuses malformed and over-nested bodies with bad_payload
    return body


def _too_large(size: str) -> Problem:
    return Problem(ErrorCode.PAYLOAD_TOO_LARGE, f"the body ({size} bytes) exceeds {MAX_REQUEST_BYTES} bytes",
                   {"limit": MAX_REQUEST_BYTES})


def validate(model: type[M], data: dict[str, Any]) -> M:
    """Validate as a node would on the JSON wire: decimal-string money, no unknown fields, no coercion."""
    try:
        return model.model_validate(data, context={"wire": Wire.JSON})
    except QtError as exc:
        raise Problem.of(exc) from None
    except ValidationError as exc:
        raise validation_problem(exc) from None


def refuse_fields(body: dict[str, Any], names: Iterable[str]) -> None:
    """Fields the gateway sets itself may not come from the client."""
    for name in names:
        if name in body:
            raise Problem(ErrorCode.VALIDATION, f"{name}: set by the gateway (from the Idempotency-Key or token)",
                          {"errors": [{"loc": name, "type": "forbidden_field", "msg": "set by the gateway"}]})


def idempotency_key(request: Request) -> str:
    """The request's Idempotency-Key: 1-255 printable ASCII characters without spaces."""
    key = request.headers.get(IDEMPOTENCY_KEY_HEADER)
    if key is None:
        raise Problem(GatewayCode.IDEMPOTENCY_KEY_REQUIRED,
                      f"{request.method} needs an {IDEMPOTENCY_KEY_HEADER} header")
    if not 0 < len(key) <= MAX_IDEMPOTENCY_KEY or not all("!" <= c <= "~" for c in key):
        raise Problem(GatewayCode.IDEMPOTENCY_KEY_REQUIRED,
                      f"{IDEMPOTENCY_KEY_HEADER} must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters")
    return key


def derived_id(who: Principal, account: str, key: str) -> str:
    """The op_id / saga id a request's key maps to: `gw-<32 hex>`, scoped like its idempotency record, so a
    retry reaches the same operation and another principal's reuse of the key does not."""
    return "gw-" + scoped(who, account, key)[:32]


def fingerprint(method: str, path: str, account: str, body: dict[str, Any]) -> str:
    """What makes two requests with one key "the same": method, path, acting account, body (key order ignored)."""
    canonical = json.dumps([method, path, account, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()
