"""Bad input gets a precise error code and changes no state."""

from __future__ import annotations

import msgpack
import pytest
from nats.aio.client import Client

from contracts.codec import MAX_REQUEST_BYTES
from mesh.rpc import ERROR_CODE_HEADER, QT_ERROR_HEADER
from tests.conftest import InProcessWallet
from tests.wallet.client import balance, event_count, new_account, wallet_call

ACCOUNT = new_account("victim")

JSON_CASES = [
    ("unknown asset", b'{"account":"%s","asset":"DOGE","amount":"1.00","op_id":"b1"}', "unknown_asset"),
    ("float amount", b'{"account":"%s","asset":"USD","amount":1.5,"op_id":"b2"}', "invalid_amount"),
    ("integer amount in JSON", b'{"account":"%s","asset":"USD","amount":100,"op_id":"b3"}', "invalid_amount"),
    ("exponent", b'{"account":"%s","asset":"USD","amount":"1e3","op_id":"b4"}', "invalid_amount"),
    ("negative", b'{"account":"%s","asset":"USD","amount":"-5","op_id":"b5"}', "invalid_amount"),
    ("zero", b'{"account":"%s","asset":"USD","amount":"0.00","op_id":"b6"}', "invalid_amount"),
    ("too many decimals", b'{"account":"%s","asset":"USD","amount":"1.001","op_id":"b7"}', "invalid_amount"),
    ("NaN string", b'{"account":"%s","asset":"USD","amount":"NaN","op_id":"b8"}', "invalid_amount"),
    ("NaN literal", b'{"account":"%s","asset":"USD","amount":NaN,"op_id":"b9"}', "bad_payload"),
    ("missing op_id", b'{"account":"%s","asset":"USD","amount":"1.00"}', "validation_error"),
    ("missing amount", b'{"account":"%s","asset":"USD","op_id":"b10"}', "validation_error"),
    ("unknown field", b'{"account":"%s","asset":"USD","amount":"1.00","op_id":"b11","x":1}', "validation_error"),
    ("account with a space", b'{"account":"%s x","asset":"USD","amount":"1.00","op_id":"b12"}',
     "validation_error"),
    ("duplicate key", b'{"account":"%s","asset":"USD","amount":"1.00","amount":"9.00","op_id":"b13"}',
     "bad_payload"),
    ("malformed JSON", b'{"account":"%s",', "bad_payload"),
    ("not an object", b"[1, 2, 3]", "bad_payload"),
]


async def _assert_refused(nc: Client, payload: bytes, code: str) -> None:
    before = (await balance(nc, ACCOUNT), await event_count(nc, ACCOUNT))
    reply = await nc.request("wallet.p0.deposit", payload, timeout=5)
    headers = reply.headers or {}
    assert headers.get(QT_ERROR_HEADER) == code, reply.data
    assert headers.get(ERROR_CODE_HEADER, "").isdigit()
    assert (await balance(nc, ACCOUNT), await event_count(nc, ACCOUNT)) == before


@pytest.mark.parametrize(("case", "payload", "code"), JSON_CASES, ids=[c[0] for c in JSON_CASES])
async def test_bad_json_deposit_is_refused_without_change(
    nc: Client, wallet: InProcessWallet, case: str, payload: bytes, code: str
) -> None:
    await wallet_call(nc, "deposit", account=ACCOUNT, asset="USD", amount="1.00", op_id=f"{ACCOUNT}:seed")
    body = payload.replace(b"%s", ACCOUNT.encode()) if b"%s" in payload else payload
    await _assert_refused(nc, body, code)


MSGPACK_CASES = [
    ("garbage", b"\xc1\xff\x00garbage", "bad_payload"),
    ("decimal string in msgpack", msgpack.packb(
        {"account": ACCOUNT, "asset": "USD", "amount": "1.00", "op_id": "m1"}), "invalid_amount"),
    ("float in msgpack", msgpack.packb(
        {"account": ACCOUNT, "asset": "USD", "amount": 1.0, "op_id": "m2"}), "invalid_amount"),
    ("bool in msgpack", msgpack.packb(
        {"account": ACCOUNT, "asset": "USD", "amount": True, "op_id": "m3"}), "invalid_amount"),
    ("amount beyond int64", msgpack.packb(
        {"account": ACCOUNT, "asset": "USD", "amount": 2**63 - 1, "op_id": "m4"}), "amount_out_of_range"),
    ("oversize", msgpack.packb(
        {"account": ACCOUNT, "asset": "USD", "amount": 1, "op_id": "m5", "pad": "x" * MAX_REQUEST_BYTES}),
     "payload_too_large"),
]


@pytest.mark.parametrize(("case", "payload", "code"), MSGPACK_CASES, ids=[c[0] for c in MSGPACK_CASES])
async def test_bad_msgpack_deposit_is_refused_without_change(
    nc: Client, wallet: InProcessWallet, case: str, payload: bytes, code: str
) -> None:
    await _assert_refused(nc, payload, code)


async def test_release_of_another_accounts_hold_is_refused(nc: Client, wallet: InProcessWallet) -> None:
    owner, thief = new_account("owner"), new_account("thief")
    await wallet_call(nc, "deposit", account=owner, asset="USD", amount="10.00", op_id=f"{owner}:d")
    await wallet_call(nc, "hold", account=owner, asset="USD", amount="10.00", hold_id=f"{owner}:h",
                      op_id=f"{owner}:h")
    await wallet_call(nc, "deposit", account=thief, asset="USD", amount="1.00", op_id=f"{thief}:d")

    reply = await nc.request("wallet.p0.release", msgpack.packb(
        {"account": thief, "asset": "USD", "hold_id": f"{owner}:h", "op_id": f"{thief}:r"}), timeout=5)

    assert (reply.headers or {}).get(QT_ERROR_HEADER) == "hold_mismatch"
    assert await balance(nc, owner) == ("0.00", "10.00")
    assert await balance(nc, thief) == ("1.00", "0.00")


@pytest.mark.parametrize("after", [2**63, 2**64, -1])
async def test_an_events_cursor_out_of_int64_is_a_validation_error(nc: Client, wallet: InProcessWallet,
                                                                    after: int) -> None:
    payload = b'{"account":"%s","after":%d}' % (ACCOUNT.encode(), after)  # JSON: msgpack cannot carry 2**64
    reply = await nc.request("wallet.p0.events", payload, timeout=5)
    assert (reply.headers or {}).get(QT_ERROR_HEADER) == "validation_error", reply.data


@pytest.mark.parametrize("payload", [
    msgpack.packb({"account": ACCOUNT, "after": 2**64 - 1}),
    b'{"account":"%s","after":9223372036854775808}' % ACCOUNT.encode(),
], ids=["msgpack", "json"])
async def test_an_events_cursor_past_int64_is_a_validation_error(
    nc: Client, wallet: InProcessWallet, payload: bytes
) -> None:
    reply = await nc.request("wallet.p0.events", payload, timeout=5)
    assert (reply.headers or {}).get(QT_ERROR_HEADER) == "validation_error", reply.data
