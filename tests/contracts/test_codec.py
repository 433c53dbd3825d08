"""The codec: msgpack by default, JSON when the payload starts with `{`, strict on both."""

from __future__ import annotations

import msgpack
import pytest

from contracts.codec import MAX_REQUEST_BYTES, Wire, decode, encode
from contracts.errors import ErrorCode, QtError


def test_json_and_msgpack_are_told_apart_and_answered_in_kind() -> None:
    assert decode(b' {"a": 1}') == ({"a": 1}, Wire.JSON)
    assert decode(msgpack.packb({"a": 1})) == ({"a": 1}, Wire.MSGPACK)
    assert encode({"a": "1.00"}, Wire.JSON) == b'{"a":"1.00"}'


@pytest.mark.parametrize(("payload", "code"), [
    (b'{"a": NaN}', ErrorCode.BAD_PAYLOAD),
    (b'{"a": Infinity}', ErrorCode.BAD_PAYLOAD),
    (b'{"a": 1, "a": 2}', ErrorCode.BAD_PAYLOAD),
    (b'{"a": ', ErrorCode.BAD_PAYLOAD),
    (msgpack.packb([1, 2]), ErrorCode.BAD_PAYLOAD),
    (b"\xc1", ErrorCode.BAD_PAYLOAD),
    (msgpack.packb({"a": 1}) + b"trailing", ErrorCode.BAD_PAYLOAD),
    (b"{" + b" " * MAX_REQUEST_BYTES + b"}", ErrorCode.PAYLOAD_TOO_LARGE),
])
def test_refuses_malformed_payloads(payload: bytes, code: ErrorCode) -> None:
    with pytest.raises(QtError) as refused:
        decode(payload)
    assert refused.value.code is code
