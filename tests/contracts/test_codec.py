"""The codec: msgpack by default, JSON when the payload starts with `{`, strict on both."""

from __future__ import annotations

import msgpack
import pytest

from contracts.codec import MAX_DEPTH, MAX_REQUEST_BYTES, Wire, decode, encode
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


def _nested_json(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


def _nested_msgpack(depth: int) -> bytes:
    return b"\x81\xa1a" * depth + b"\x01"  # {"a": {"a": ... 1}}, built by hand: packb refuses deep input too


@pytest.mark.parametrize("payload", [
    _nested_json(MAX_DEPTH + 1), _nested_json(5_000), b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    _nested_msgpack(MAX_DEPTH + 1), _nested_msgpack(5_000), b"\x81\xa1a" + b"\x91" * 5_000 + b"\x01",
], ids=["json-33", "json-5000", "json-arrays", "msgpack-33", "msgpack-5000", "msgpack-arrays"])
def test_nesting_past_the_limit_is_a_bad_payload(payload: bytes) -> None:
    with pytest.raises(QtError) as refused:
        decode(payload)
    assert refused.value.code is ErrorCode.BAD_PAYLOAD
    assert "nested deeper" in refused.value.message


def test_nesting_up_to_the_limit_decodes() -> None:
    assert decode(_nested_json(MAX_DEPTH))[1] is Wire.JSON
    assert decode(_nested_msgpack(MAX_DEPTH))[1] is Wire.MSGPACK


@pytest.mark.parametrize("payload", [
    msgpack.packb({"a": msgpack.ExtType(5, b"xx")}),
    msgpack.packb({"a": [msgpack.Timestamp(1)]}),  # the timestamp extension (type -1)
    b'{"a": ' + b"9" * 5_000 + b"}",  # an integer past Python's digit limit
    b"\x81\xa1a\xcf" + b"\xff" * 9,  # a truncated uint64
], ids=["ext-type", "timestamp", "huge-json-int", "truncated-uint64"])
def test_extension_types_and_absurd_numbers_are_bad_payloads(payload: bytes) -> None:
    with pytest.raises(QtError) as refused:
        decode(payload)
    assert refused.value.code is ErrorCode.BAD_PAYLOAD
