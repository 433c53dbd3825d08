"""`encode_json`, the bytes of every response, record and WebSocket frame: orjson, and the same bytes the
standard library wrote before it (replays of records written then stay byte-identical)."""

from __future__ import annotations

import json
from typing import Any

from gateway.problems import encode_json


def stdlib(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def test_a_response_body_encodes_as_the_standard_library_did() -> None:
    body = {"order_id": "gw-1", "status": "completed", "fills": [{"price": "50.00", "qty": "1.0000"}],
            "fee": "0.05", "note": "café ☕ \"quoted\" \\ \n", "done": True, "error": None, "seq": 2**63 - 1,
            "levels": {1: "a"}}
    assert encode_json(body) == stdlib(body)


def test_an_integer_beyond_64_bits_falls_back_to_the_standard_library() -> None:
    body = {"units": 10**30, "neg": -(2**64)}
    assert encode_json(body) == stdlib(body)
