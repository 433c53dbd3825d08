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
                                              client: httpx.AsyncClient, ops_token: str,
                                              platform: Platform) -> None:
    account = new_account("bad")
    await fund(platform.nc, account, USD=10_000)
    token = ops_token
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


INT64_MAX = 2**63 - 1
#: (name, method, path, query) of every integer query or path parameter, each just out of range.
OUT_OF_RANGE = [
    ("events_after_past_int64", "GET", "/v1/accounts/{account}/events", {"after": str(INT64_MAX + 1)}),
    ("events_after_huge", "GET", "/v1/accounts/{account}/events", {"after": "9" * 40}),
    ("events_after_negative", "GET", "/v1/accounts/{account}/events", {"after": "-1"}),
    ("events_limit_zero", "GET", "/v1/accounts/{account}/events", {"limit": "0"}),
    ("events_limit_past_max", "GET", "/v1/accounts/{account}/events", {"limit": "1001"}),
    ("orders_limit_past_max", "GET", "/v1/orders", {"limit": str(2**64)}),
    ("sagas_limit_zero", "GET", "/v1/sagas", {"limit": "0"}),
    ("book_depth_past_int64", "GET", "/v1/markets/AAPL/book", {"depth": str(2**63)}),
    ("trades_limit_past_max", "GET", "/v1/markets/AAPL/trades", {"limit": "1001"}),
    ("candles_before_past_int64", "GET", "/v1/markets/AAPL/candles", {"before": str(INT64_MAX + 1)}),
    ("candles_after_past_int64", "GET", "/v1/markets/AAPL/candles", {"after": str(2**64)}),
    ("candles_limit_zero", "GET", "/v1/markets/AAPL/candles", {"limit": "0"}),
    ("dlq_limit_past_max", "GET", "/v1/ops/dlq", {"limit": str(INT64_MAX + 1)}),
    ("dlq_replay_seq_past_int64", "POST", f"/v1/ops/dlq/{INT64_MAX + 1}/replay", {}),
    ("dlq_replay_seq_zero", "POST", "/v1/ops/dlq/0/replay", {}),
]


@pytest.mark.parametrize(("name", "method", "path", "query"), OUT_OF_RANGE, ids=[o[0] for o in OUT_OF_RANGE])
async def test_integer_parameters_out_of_range_are_422(name: str, method: str, path: str, query: dict[str, str],
                                                       client: httpx.AsyncClient, gateway: GatewayProcess,
                                                       ops_token: str) -> None:
    account = new_account("bounds")
    headers = bearer(ops_token, new_key())
    reply = await client.request(method, path.format(account=account), params=query, headers=headers)
    body = problem(reply, 422, "validation_error")
    assert body["context"]["errors"][0]["type"] in ("less_than_equal", "greater_than_equal", "int_parsing"), body
    assert (await client.get("/health")).status_code == 200


async def test_the_largest_cursor_is_served(client: httpx.AsyncClient, gateway: GatewayProcess,
                                            platform: Platform) -> None:
    account = new_account("cursor")
    await fund(platform.nc, account, USD=100)
    reply = await client.get(f"/v1/accounts/{account}/events", params={"after": str(INT64_MAX)},
                             headers=bearer(gateway.token(account)))
    assert reply.status_code == 200, reply.text
    assert reply.json()["events"] == []


async def test_oversize_body_without_content_length_is_413(client: httpx.AsyncClient,
                                                           ops_token: str, platform: Platform) -> None:
    account = new_account("chunked")
    await fund(platform.nc, account, USD=10_000)

    async def chunks() -> object:
        yield b'{"asset": "USD", "amount": "1.00", "pad": "'
        for _ in range(20):
            yield b"x" * 8192
        yield b'"}'

    refused = await client.post(f"/v1/accounts/{account}/withdrawals", content=chunks(),
                                headers=bearer(ops_token, new_key()))
    problem(refused, 413, "payload_too_large")
    assert await balances(platform.nc, account) == {"USD": (10_000, 0)}
