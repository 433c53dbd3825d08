"""Idempotency-Key: replays, conflicts, concurrent duplicates, in-flight, and keys scoped per principal and account."""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.js.errors import KeyNotFoundError

from contracts.gateway import Role
from contracts.subjects import IDEMPOTENCY_BUCKET
from gateway.idempotency import record_key
from gateway.payload import fingerprint
from gateway.tokens import Principal
from tests.clearing.platform import Platform, balances, fund, wallet
from tests.gateway.conftest import running_gateway
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key, problem
from tests.polling import eventually

#: The principal of the `ops_token` fixture.
OPERATOR = Principal("operator", Role.OPS)


async def test_same_key_replays_the_identical_response(client: httpx.AsyncClient, ops_token: str,
                                                       platform: Platform) -> None:
    account = new_account("idem")
    headers = bearer(ops_token, new_key())
    first = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "5.00"},
                              headers=headers)
    again = await client.post(f"/v1/accounts/{account}/deposits", json={"amount": "5.00", "asset": "USD"},
                              headers=headers)
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert "idempotent-replayed" not in first.headers
    assert again.headers["idempotent-replayed"] == "true"
    assert await balances(platform.nc, account) == {"USD": (500, 0)}


async def test_same_key_other_payload_is_a_conflict(client: httpx.AsyncClient, ops_token: str,
                                                    platform: Platform) -> None:
    account = new_account("idem")
    headers = bearer(ops_token, new_key())
    await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "5.00"}, headers=headers)
    other = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "6.00"},
                              headers=headers)
    problem(other, 422, "idempotency_conflict")
    elsewhere = await client.post(f"/v1/accounts/{account}/withdrawals", json={"asset": "USD", "amount": "5.00"},
                                  headers=headers)
    problem(elsewhere, 422, "idempotency_conflict")
    assert await balances(platform.nc, account) == {"USD": (500, 0)}


async def test_missing_key_is_refused(client: httpx.AsyncClient, gateway: GatewayProcess, ops_token: str,
                                      platform: Platform) -> None:
    account = new_account("nokey")
    token = gateway.token(account)
    problem(await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "5.00"},
                              headers=bearer(ops_token)), 400, "idempotency_key_required")
    problem(await client.delete("/v1/orders/abc", headers=bearer(token)), 400, "idempotency_key_required")
    problem(await client.post("/v1/orders", json={}, headers=bearer(token, "has space")), 400,
            "idempotency_key_required")
    assert await balances(platform.nc, account) == {}


async def test_concurrent_duplicates_execute_once(client: httpx.AsyncClient, ops_token: str,
                                                  platform: Platform) -> None:
    account = new_account("race")
    headers = bearer(ops_token, new_key())
    responses = await asyncio.gather(*(
        client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "3.00"}, headers=headers)
        for _ in range(6)))
    assert {r.status_code for r in responses} == {200}
    assert len({r.content for r in responses}) == 1
    assert sum("idempotent-replayed" not in r.headers for r in responses) == 1
    assert await balances(platform.nc, account) == {"USD": (300, 0)}
    events = await wallet(platform.nc, "events", account=account)
    assert len(events["events"]) == 1


async def test_concurrent_duplicate_orders_make_one_saga(client: httpx.AsyncClient, gateway: GatewayProcess,
                                                         platform: Platform) -> None:
    account = new_account("orace")
    await fund(platform.nc, account, USD=100_000)
    headers = bearer(gateway.token(account), new_key())
    order = {"instrument": "AAPL", "side": "BUY", "price": "70.00", "qty": "1.0000"}
    responses = await asyncio.gather(*(client.post("/v1/orders", json=order, headers=headers) for _ in range(4)))
    assert {r.status_code for r in responses} == {201}
    assert len({r.content for r in responses}) == 1
    listed = await client.get("/v1/orders", headers=bearer(gateway.token(account)))
    assert len(listed.json()["sagas"]) == 1
    assert await balances(platform.nc, account) == {"USD": (100_000 - 7_000 - 3, 7_003)}


async def test_keys_are_per_account(client: httpx.AsyncClient, ops_token: str, platform: Platform) -> None:
    alice, bob = new_account("alice"), new_account("bob")
    key = new_key()
    for account in (alice, bob):  # one principal, one key, two acted-on accounts: two requests
        done = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "1.00"},
                                 headers=bearer(ops_token, key))
        assert done.status_code == 200 and "idempotent-replayed" not in done.headers
        assert done.json()["changes"][0]["account"] == account
    assert await balances(platform.nc, bob) == {"USD": (100, 0)}


async def test_another_principals_reuse_of_a_key_is_another_request(client: httpx.AsyncClient,
                                                                    gateway: GatewayProcess, ops_token: str,
                                                                    platform: Platform) -> None:
    alice = new_account("alice")
    key = new_key()
    path, body = f"/v1/accounts/{alice}/deposits", {"asset": "USD", "amount": "1.00"}
    first = await client.post(path, json=body, headers=bearer(ops_token, key))
    other = await client.post(path, json=body, headers=bearer(gateway.token("treasury", Role.OPS), key))
    assert first.status_code == other.status_code == 200, (first.text, other.text)
    assert "idempotent-replayed" not in other.headers
    assert await balances(platform.nc, alice) == {"USD": (200, 0)}  # both applied, neither dropped
    retry = await client.post(path, json=body, headers=bearer(ops_token, key))
    assert retry.headers["idempotent-replayed"] == "true" and retry.content == first.content
    assert await balances(platform.nc, alice) == {"USD": (200, 0)}  # the same principal's retry: once
    assert len((await wallet(platform.nc, "events", account=alice))["events"]) == 2


async def test_an_operator_and_the_customer_reusing_a_key_place_two_orders(
        client: httpx.AsyncClient, gateway: GatewayProcess, ops_token: str, platform: Platform) -> None:
    alice = new_account("alice")
    await fund(platform.nc, alice, USD=100_000)
    key = new_key()
    order = {"account": alice, "instrument": "AAPL", "side": "BUY", "price": "60.00", "qty": "1.0000"}
    by_ops = await client.post("/v1/orders", json=order, headers=bearer(ops_token, key))
    by_alice = await client.post("/v1/orders", json=order, headers=bearer(gateway.token(alice), key))
    assert by_ops.status_code == by_alice.status_code == 201, (by_ops.text, by_alice.text)
    assert by_ops.json()["saga_id"] != by_alice.json()["saga_id"]
    assert await balances(platform.nc, alice) == {"USD": (100_000 - 2 * 6_003, 2 * 6_003)}


async def test_refusals_of_the_mesh_are_replayed_but_not_rerun(client: httpx.AsyncClient, ops_token: str,
                                                               platform: Platform) -> None:
    account = new_account("broke")
    headers = bearer(ops_token, new_key())
    body = {"asset": "USD", "amount": "1.00"}
    first = await client.post(f"/v1/accounts/{account}/withdrawals", json=body, headers=headers)
    problem(first, 409, "insufficient_funds")
    await wallet(platform.nc, "deposit", account=account, asset="USD", amount=500, op_id=new_key())
    again = await client.post(f"/v1/accounts/{account}/withdrawals", json=body, headers=headers)
    assert again.content == first.content and again.headers["idempotent-replayed"] == "true"
    assert await balances(platform.nc, account) == {"USD": (500, 0)}


@pytest.fixture(scope="module")
async def impatient(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """A gateway whose duplicates wait only briefly for the first request."""
    async with running_gateway(platform, "gateway-impatient", QT_IDEMPOTENCY_WAIT_S="0.3") as process:
        yield process


async def test_still_in_flight_past_the_wait_is_409(impatient: GatewayProcess, platform: Platform) -> None:
    account = new_account("slow")
    key = new_key()
    body = {"asset": "USD", "amount": "2.00"}
    path = f"/v1/accounts/{account}/deposits"
    # Arrange a first request that is still running: its pending record, as the gateway writes it.
    kv = await platform.nc.jetstream().key_value(IDEMPOTENCY_BUCKET)
    pending = {"state": "pending", "fingerprint": fingerprint("POST", path, account, body),
               "started_ms": int(time.time() * 1000)}
    await kv.create(record_key(OPERATOR, account, key), json.dumps(pending).encode())
    async with httpx.AsyncClient(base_url=impatient.url, timeout=30) as client:
        refused = await client.post(path, json=body, headers=bearer(impatient.token("operator", Role.OPS), key))
    problem(refused, 409, "idempotency_in_flight")
    assert await balances(platform.nc, account) == {}  # the deposit never reached the wallet


async def test_a_pending_record_left_by_a_dead_gateway_is_taken_over(client: httpx.AsyncClient, ops_token: str,
                                                                     platform: Platform) -> None:
    account = new_account("orphan")
    key = new_key()
    body = {"asset": "USD", "amount": "4.00"}
    path = f"/v1/accounts/{account}/deposits"
    kv = await platform.nc.jetstream().key_value(IDEMPOTENCY_BUCKET)
    abandoned = {"state": "pending", "fingerprint": fingerprint("POST", path, account, body),
                 "started_ms": int(time.time() * 1000) - 3_600_000}
    await kv.create(record_key(OPERATOR, account, key), json.dumps(abandoned).encode())
    done = await client.post(path, json=body, headers=bearer(ops_token, key))
    assert done.status_code == 200, done.text
    assert await balances(platform.nc, account) == {"USD": (400, 0)}
    again = await client.post(path, json=body, headers=bearer(ops_token, key))
    assert again.headers["idempotent-replayed"] == "true" and again.content == done.content


async def test_an_order_writes_its_record_once_and_a_replay_not_at_all(client: httpx.AsyncClient,
                                                                      gateway: GatewayProcess,
                                                                      platform: Platform) -> None:
    account = new_account("onewrite")
    await fund(platform.nc, account, USD=100_000)
    key = new_key()
    headers = bearer(gateway.token(account), key)
    order = {"instrument": "AAPL", "side": "BUY", "price": "50.00", "qty": "1.0000"}
    # every write under the record's key, as it goes by (the bucket keeps only the latest)
    writes = await platform.nc.subscribe(
        f"$KV.{IDEMPOTENCY_BUCKET}.{record_key(Principal(account, Role.TRADER), account, key)}")
    try:
        placed = await client.post("/v1/orders", json=order, headers=headers)
        assert placed.status_code == 201, placed.text
        written = await writes.next_msg(timeout=10)  # after the response, off its path
        assert json.loads(written.data)["state"] == "done", "one record write per order: no pending record first"
        held = await balances(platform.nc, account)
        again = await client.post("/v1/orders", json=order, headers=headers)
        assert again.content == placed.content and again.headers["idempotent-replayed"] == "true"
        problem(await client.post("/v1/orders", json={**order, "price": "51.00"}, headers=headers), 422,
                "idempotency_conflict")
        await asyncio.sleep(0.3)
        assert writes.pending_msgs == 0, "neither the replay nor the conflict writes a record"
        assert await balances(platform.nc, account) == held  # neither the replay nor the conflict ran anything
    finally:
        await writes.unsubscribe()


async def test_a_key_used_for_a_deposit_places_no_order(client: httpx.AsyncClient, ops_token: str,
                                                        platform: Platform) -> None:
    # Why an order reads the key's record before its saga: clearing's saga id only dedups orders, so a key
    # another route used first would otherwise run a saga before the conflict is found.
    account = new_account("crossroute")
    headers = bearer(ops_token, new_key())
    deposited = await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "500.00"},
                                  headers=headers)
    assert deposited.status_code == 200, deposited.text
    order = {"account": account, "instrument": "AAPL", "side": "BUY", "price": "50.00", "qty": "1.0000"}
    problem(await client.post("/v1/orders", json=order, headers=headers), 422, "idempotency_conflict")
    assert await balances(platform.nc, account) == {"USD": (50_000, 0)}  # no hold: no saga ran
    listed = await client.get("/v1/orders", params={"account": account}, headers=bearer(ops_token))
    assert listed.status_code == 200 and listed.json()["sagas"] == [], listed.text


@pytest.fixture(scope="module")
async def late_recorder(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """A gateway that holds each order's idempotency record back for 2 s after the response."""
    async with running_gateway(platform, "gateway-late-record", QT_IDEMPOTENCY_RECORD_DELAY_S="2") as process:
        yield process


async def test_an_order_is_answered_before_its_record_and_this_gateway_replays_it_meanwhile(
        late_recorder: GatewayProcess, platform: Platform) -> None:
    account = new_account("late")
    await fund(platform.nc, account, USD=100_000)
    key = new_key()
    headers = bearer(late_recorder.token("operator", Role.OPS), key)
    order = {"account": account, "instrument": "AAPL", "side": "BUY", "price": "50.00", "qty": "1.0000"}
    kv = await platform.nc.jetstream().key_value(IDEMPOTENCY_BUCKET)
    name = record_key(OPERATOR, account, key)
    async with httpx.AsyncClient(base_url=late_recorder.url, timeout=30) as client:
        placed = await client.post("/v1/orders", json=order, headers=headers)
        assert placed.status_code == 201, placed.text
        with pytest.raises(KeyNotFoundError):  # the response did not wait for the record
            await kv.get(name)
        held = await balances(platform.nc, account)
        again = await client.post("/v1/orders", json=order, headers=headers)
        assert again.content == placed.content and again.headers["idempotent-replayed"] == "true"
        problem(await client.post("/v1/orders", json={**order, "price": "51.00"}, headers=headers), 422,
                "idempotency_conflict")
        problem(await client.post(f"/v1/accounts/{account}/deposits", json={"asset": "USD", "amount": "1.00"},
                                  headers=headers), 422, "idempotency_conflict")
        assert await balances(platform.nc, account) == held  # one hold: nothing ran twice
        with pytest.raises(KeyNotFoundError):  # all of that was answered from memory
            await kv.get(name)
    entry = await eventually(lambda: kv.get(name), lambda entry: entry is not None, timeout_s=10,
                             ignoring=(KeyNotFoundError,), what="the record, written after the delay")
    record = json.loads(entry.value or b"{}")
    assert record["state"] == "done" and record["body"].encode() == placed.content


async def test_a_gateway_stopping_writes_the_records_of_answers_it_sent(platform: Platform) -> None:
    async with running_gateway(platform, "gateway-late-stop", QT_IDEMPOTENCY_RECORD_DELAY_S="2") as process:
        account = new_account("stopping")
        await fund(platform.nc, account, USD=100_000)
        key = new_key()
        order = {"account": account, "instrument": "AAPL", "side": "BUY", "price": "50.00", "qty": "1.0000"}
        async with httpx.AsyncClient(base_url=process.url, timeout=30) as client:
            headers = bearer(process.token("operator", Role.OPS), key)
            placed = await client.post("/v1/orders", json=order, headers=headers)
        assert placed.status_code == 201, placed.text
        assert process.proc is not None
        process.proc.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully (the lifespan's end included), then re-raises the signal
        assert await asyncio.to_thread(process.proc.wait, 30) == -signal.SIGTERM
        kv = await platform.nc.jetstream().key_value(IDEMPOTENCY_BUCKET)
        entry = await kv.get(record_key(OPERATOR, account, key))  # written before the process exited
        assert json.loads(entry.value or b"{}")["body"].encode() == placed.content


async def test_a_record_jetstream_refused_at_first_is_stored_once_it_takes_writes(
        client: httpx.AsyncClient, ops_token: str, platform: Platform) -> None:
    # The bucket's stream stops listening on its subjects (what a publisher sees during an election or a
    # restart: no responders) while an order is answered, then listens again.
    js = platform.nc.jetstream()
    stream = f"KV_{IDEMPOTENCY_BUCKET}"
    config = (await js.stream_info(stream)).config
    subjects = list(config.subjects or [])
    account = new_account("refused")
    await fund(platform.nc, account, USD=100_000)
    key = new_key()
    order = {"account": account, "instrument": "AAPL", "side": "BUY", "price": "50.00", "qty": "1.0000"}
    kv = await js.key_value(IDEMPOTENCY_BUCKET)
    name = record_key(OPERATOR, account, key)
    async with (running_gateway(platform, "gateway-refused-record") as process,
                httpx.AsyncClient(base_url=process.url, timeout=30) as own):
        headers = bearer(process.token("operator", Role.OPS), key)
        config.subjects = [f"$KV.{IDEMPOTENCY_BUCKET}.refused-meanwhile.>"]
        await js.update_stream(config)
        try:
            placed = await own.post("/v1/orders", json=order, headers=headers)
            assert placed.status_code == 201, placed.text
            await asyncio.sleep(1.5)  # several attempts refused meanwhile
            with pytest.raises(KeyNotFoundError):
                await kv.get(name)
            again = await own.post("/v1/orders", json=order, headers=headers)
            assert again.content == placed.content and again.headers["idempotent-replayed"] == "true"
        finally:
            config.subjects = subjects
            await js.update_stream(config)
        entry = await eventually(lambda: kv.get(name), lambda entry: entry is not None, timeout_s=10,
                                 ignoring=(KeyNotFoundError,), what="the record, stored by a later attempt")
    assert json.loads(entry.value or b"{}")["body"].encode() == placed.content
    # the default gateway never saw the order: its duplicate is answered from the stored record
    replayed = await client.post("/v1/orders", json=order, headers=bearer(ops_token, key))
    assert replayed.content == placed.content and replayed.headers["idempotent-replayed"] == "true"
