"""Bad input at the edge: a precise 4xx, no state change, and the gateway keeps serving."""

from __future__ import annotations

import httpx
import pytest

from contracts.codec import MAX_REQUEST_BYTES
from tests.clearing.platform import Platform, balances, fund
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem

#: (name, raw body, status, code) for a withdrawal of the account's money.
BAD_WITHDRAWALS = [
    ("malformed_json", b'{"asset": "USD", "amount": ', 400, "bad_payload"),
    ("not_an_object", b'["USD", "1.00"]', 400, "bad_payload"),
    ("not_json", b"asset=USD&amount=1.00", 400, "bad_payload"),
    ("duplicate_keys", b'{"asset": "USD", "amount": "1.00", "amount": "900.00"}', 400, "bad_payload"),
    ("nan", b'{"asset": "USD", "amount": NaN}', 400, "bad_payload"),
    ("deep_nesting", b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, "bad_payload"),
    ("invalid_utf8", b'{"asset": "\xff\xfe"}', 400, "bad_payload"),
    ("float_money", b'{"asset": "USD", "amount": 1.5}', 422, "invalid_amount"),
    ("integer_money", b'{"asset": "USD", "amount": 150}', 422, "invalid_amount"),
    ("exponent", b'{"asset": "USD", "amount": "1e2"}', 422, "invalid_amount"),
    ("negative", b'{"asset": "USD", "amount": "-1.00"}', 422, "invalid_amount"),
    ("over_precise", b'{"asset": "USD", "amount": "1.001"}', 422, "invalid_amount"),
    ("zero", b'{"asset": "USD", "amount": "0.00"}', 422, "invalid_amount"),
    ("unknown_asset", b'{"asset": "DOGE", "amount": "1.00"}', 422, "unknown_asset"),
    ("wrong_type", b'{"asset": 7, "amount": "1.00"}', 422, "validation_error"),
    ("unknown_field", b'{"asset": "USD", "amount": "1.00", "memo": "hi"}', 422, "validation_error"),
    ("missing_field", b'{"asset": "USD"}', 422, "validation_error"),
    ("own_op_id", b'{"asset": "USD", "amount": "1.00", "op_id": "mine"}', 422, "validation_error"),
    ("other_account_in_body", b'{"asset": "USD", "amount": "1.00", "account": "bob"}', 422, "validation_error"),
    ("oversize", b'{"asset": "USD", "amount": "1.00", "pad": "' + b"x" * MAX_REQUEST_BYTES + b'"}', 413,
     "payload_too_large"),
]


@pytest.mark.parametrize(("name", "raw", "status", "code"), BAD_WITHDRAWALS, ids=[b[0] for b in BAD_WITHDRAWALS])
async def test_bad_withdrawal_changes_nothing(name: str, raw: bytes, status: int, code: str,
                                              client: httpx.AsyncClient, gateway: GatewayProcess,
                                              platform: Platform) -> None:
    account = new_account("bad")
    await fund(platform.nc, account, USD=10_000)
    token = gateway.token(account)
    headers = bearer(token, new_key(), **{"Content-Type": "application/json"})
    refused = await client.post(f"/v1/accounts/{account}/withdrawals", content=raw, headers=headers)
    problem(refused, status, code)
    assert await balances(platform.nc, account) == {"USD": (10_000, 0)}
    assert (await client.get("/health")).status_code == 200
    still = await client.post(f"/v1/accounts/{account}/withdrawals", json={"asset": "USD", "amount": "1.00"},
                              headers=bearer(token, new_key()))
    assert still.status_code == 200, still.text


#: (name, order body, status, code): orders refused before any money is held.
BAD_ORDERS = [
    ("float_price", {"instrument": "AAPL", "side": "BUY", "price": 187.42, "qty": "1.0000"}, 422, "invalid_amount"),
    ("float_qty", {"instrument": "AAPL", "side": "BUY", "price": "187.42", "qty": 1.0}, 422, "invalid_amount"),
    ("off_tick", {"instrument": "ETH-USD", "side": "BUY", "price": "3450.01", "qty": "0.0001"}, 422,
     "price_off_tick"),
    ("below_min", {"instrument": "BTC-USD", "side": "BUY", "price": "67500.00", "qty": "0.00000001"}, 422,
     "qty_below_min"),
    ("unknown_instrument", {"instrument": "DOGE", "side": "BUY", "price": "1.00", "qty": "1"}, 422,
     "unknown_instrument"),
    ("bad_side", {"instrument": "AAPL", "side": "HOLD", "price": "1.00", "qty": "1.0000"}, 422, "validation_error"),
    ("market_with_price", {"instrument": "AAPL", "side": "SELL", "type": "MARKET", "price": "1.00",
                           "qty": "1.0000"}, 422, "market_with_price"),
    ("own_saga_id", {"instrument": "AAPL", "side": "BUY", "price": "1.00", "qty": "1.0000", "saga_id": "x"}, 422,
     "validation_error"),
    ("unknown_field", {"instrument": "AAPL", "side": "BUY", "price": "1.00", "qty": "1.0000", "leverage": 100},
     422, "validation_error"),
    ("wrong_type", {"instrument": "AAPL", "side": "BUY", "price": "1.00", "qty": "1.0000", "post_only": "yes"},
     422, "validation_error"),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), BAD_ORDERS, ids=[b[0] for b in BAD_ORDERS])
async def test_bad_order_holds_nothing(name: str, body: dict[str, object], status: int, code: str,
                                       client: httpx.AsyncClient, gateway: GatewayProcess,
                                       platform: Platform) -> None:
    account = new_account("badorder")
    await fund(platform.nc, account, USD=1_000_000)
    token = gateway.token(account)
    problem(await client.post("/v1/orders", json=body, headers=bearer(token, new_key())), status, code)
    assert await balances(platform.nc, account) == {"USD": (1_000_000, 0)}
    assert (await client.get("/v1/orders", headers=bearer(token))).json()["sagas"] == []


async def test_bad_query_and_path_values(client: httpx.AsyncClient, gateway: GatewayProcess) -> None:
    account = new_account("query")
    token = gateway.token(account)
    problem(await client.get(f"/v1/accounts/{account}/events", params={"limit": "lots"}, headers=bearer(token)),
            422, "validation_error")
    problem(await client.get(f"/v1/accounts/{account}/events", params={"after": "-1"}, headers=bearer(token)),
            422, "validation_error")
    problem(await client.get("/v1/markets/AAPL/book", params={"depth": "0"}), 422, "validation_error")
    problem(await client.get("/v1/sagas/not.a.saga", headers=bearer(token)), 422, "validation_error")
    problem(await client.get("/v1/nowhere"), 404, "not_found")
    problem(await client.put("/v1/orders", headers=bearer(token)), 405, "method_not_allowed")


async def test_oversize_body_without_content_length_is_413(client: httpx.AsyncClient,
                                                           gateway: GatewayProcess, platform: Platform) -> None:
    account = new_account("chunked")
    await fund(platform.nc, account, USD=10_000)

    async def chunks() -> object:
        yield b'{"asset": "USD", "amount": "1.00", "pad": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    refused = await client.post(f"/v1/accounts/{account}/withdrawals", content=chunks(),
                                headers=bearer(gateway.token(account), new_key()))
    problem(refused, 413, "payload_too_large")
    assert await balances(platform.nc, account) == {"USD": (10_000, 0)}
