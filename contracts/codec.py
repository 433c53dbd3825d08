"""Wire codec: msgpack by default, JSON when the payload starts with `{`; reply in kind."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Final

import msgpack

from contracts.errors import ErrorCode, QtError

#: Largest request body any node accepts; larger ones are refused before decoding.
MAX_REQUEST_BYTES: Final[int] = 64 * 1024
#: Deepest nesting of objects and arrays a request may have (the deepest message, a settle's legs, has 3).
MAX_DEPTH: Final[int] = 32


class Wire(StrEnum):
    """How a payload was encoded; replies use the same wire as their request."""

    MSGPACK = "msgpack"
    JSON = "json"


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def sniff(payload: bytes) -> Wire:
    """Tell the wire of a payload: JSON if its first non-blank byte is `{`."""
    return Wire.JSON if payload.lstrip()[:1] == b"{" else Wire.MSGPACK


def decode(payload: bytes) -> tuple[dict[str, Any], Wire]:
    """Decode a request body into a dict, refusing oversize, malformed and non-object bodies."""
    if len(payload) > MAX_REQUEST_BYTES:
        raise QtError(
            ErrorCode.PAYLOAD_TOO_LARGE,
            f"payload of {len(payload)} bytes exceeds {MAX_REQUEST_BYTES}",
            {"limit": MAX_REQUEST_BYTES},
        )
    if not payload.strip():
        return {}, Wire.JSON
    wire = sniff(payload)
    try:
        if wire is Wire.JSON:
            body = json.loads(payload, parse_constant=_refuse_constant, object_pairs_hook=_unique_keys)
        else:
            body = msgpack.unpackb(payload, raw=False, strict_map_key=True, ext_hook=_refuse_ext,
                                   timestamp=0)
    except (RecursionError, msgpack.StackError):  # deep nesting fits in a small payload
        raise QtError(ErrorCode.BAD_PAYLOAD, f"payload is nested deeper than {MAX_DEPTH} levels",
                      {"max_depth": MAX_DEPTH}) from None
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, TypeError, OverflowError) as exc:
        raise QtError(ErrorCode.BAD_PAYLOAD, f"payload is not valid {wire}: {exc}"[:200]) from None
    if not isinstance(body, dict):
        raise QtError(ErrorCode.BAD_PAYLOAD, f"payload must be an object, got {type(body).__name__}")
    _check_shape(body)
    return body, wire


def _refuse_ext(code: int, data: bytes) -> Any:
    raise ValueError(f"msgpack extension type {code} is not part of the contract")


_SCALARS: Final = frozenset({str, int, float, bool, type(None), bytes})


def _check_shape(body: dict[str, Any]) -> None:
    """Refuse nesting deeper than `MAX_DEPTH` and values no contract has (msgpack timestamps), without
    recursion; a flat body (almost every command) costs one pass over its values."""
    level: list[Any] = [body]
    for _ in range(MAX_DEPTH):
        deeper: list[Any] = []
        for node in level:
            for child in node.values() if type(node) is dict else node:
                kind = type(child)
                if kind is dict or kind is list:
                    deeper.append(child)
                elif kind not in _SCALARS:
                    raise QtError(ErrorCode.BAD_PAYLOAD, f"payload holds a {kind.__name__}, which no contract has")
        if not deeper:
            return
        level = deeper
    raise QtError(ErrorCode.BAD_PAYLOAD, f"payload is nested deeper than {MAX_DEPTH} levels",
                  {"max_depth": MAX_DEPTH})


def encode(body: Any, wire: Wire = Wire.MSGPACK) -> bytes:
    """Encode a reply or message body on the given wire."""
    if wire is Wire.JSON:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
    packed: bytes = msgpack.packb(body, use_bin_type=True)
    return packed


def loads(payload: bytes) -> Any:
    """Decode a trusted payload (a reply or stream message) of either wire, without limits."""
    if sniff(payload) is Wire.JSON:
        return json.loads(payload)
    return msgpack.unpackb(payload, raw=False, strict_map_key=False)
