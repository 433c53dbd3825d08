"""Saga records stored by the code before the typed records (plain dicts packed with msgpack) load into
the typed models, are stored back byte for byte, and a recovered one is driven to its end."""

from __future__ import annotations

import time
import uuid
from typing import Any

import msgpack

from contracts.clearing import (
    ClientSagaView,
    FillsReversed,
    FillsSettled,
    HoldReleased,
    HoldTaken,
    OrderCancelled,
    OrderSubmitted,
    PlaceOrder,
    SagaStatus,
    TradesBusted,
    TradesPublished,
)
from contracts.instruments import instrument
from contracts.matching import Fill, OrderResult, OrderType, Side
from contracts.subjects import SAGAS_BUCKET, MatchingEndpoint, matching_subject
from mesh.rpc import call
from nodes.clearing import amounts
from nodes.clearing.node import request_hash
from nodes.clearing.store import decode, encode
from tests.clearing.platform import Platform, balances, fund, gone_quiet, place, wait_final, wallet
from tests.clearing.test_place_order import acct


def old_request(saga_id: str, account: str, price: int, qty: int) -> dict[str, Any]:
    """A LIMIT BUY of MSFT as the old code stored `request`: `PlaceOrder.model_dump()` with its saga_id."""
    return {"account": account, "instrument": "MSFT", "side": "BUY", "type": "LIMIT", "tif": "GTC", "price": price,
            "qty": qty, "post_only": False, "stp": "dc", "client_order_id": None, "max_quote": None,
            "saga_id": saga_id, "inject_failure_step": None}


def old_step(saga_id: str, name: str, status: str, result: dict[str, Any] | None = None) -> dict[str, Any]:
    """A `StepRecord` as the old code stored it (its result a plain dict)."""
    ran = status != "pending"
    return {"name": name, "op_id": f"{saga_id}:{name}", "status": status, "started_ns": 1 if ran else None,
            "ended_ns": 2 if status in ("done", "failed") else None, "attempts": 1 if ran else 0,
            "result": result, "error": None}


def old_record(saga_id: str, request: dict[str, Any], hold: int, order: dict[str, Any] | None,
               steps: list[dict[str, Any]], compensations: list[dict[str, Any]], status: str) -> dict[str, Any]:
    """A whole `SagaRecord` in the old shape, field for field."""
    return {"saga_id": saga_id, "order_id": saga_id, "account": request["account"], "instrument": "MSFT",
            "side": "BUY", "request": request, "request_hash": request_hash(request), "hold_asset": "USD",
            "hold_amount": hold, "status": status, "steps": steps, "compensations": compensations, "order": order,
            "error": None, "owner": "gone-host:1", "lease_until_ms": 0, "created_ns": time.time_ns(),
            "updated_ns": time.time_ns()}


def engine_order(saga_id: str, account: str) -> dict[str, Any]:
    """An engine `OrderResult` body (integer units) with one fill, as `matching.submit` answers it."""
    fill = {"trade_id": "MSFT-7", "instrument": "MSFT", "price": 40_000, "qty": 10_000, "maker_order_id": "m1",
            "taker_order_id": saga_id, "maker_account": "maker", "taker_account": account, "taker_side": "BUY",
            "maker_remaining": 0, "maker_executed_value": 40_000, "taker_executed_value": 40_000}
    return {"order_id": saga_id, "instrument": "MSFT", "account": account, "side": "BUY", "status": "filled",
            "price": 40_000, "qty": 10_000, "filled": 10_000, "executed_value": 40_000, "remaining": 0,
            "reason": None, "fills": [fill], "journal_seq": 3}


def test_every_old_step_result_and_order_loads_as_its_typed_model() -> None:
    saga_id, account = "old-1", "alice"
    order = engine_order(saga_id, account)
    steps = [
        old_step(saga_id, "reserve_funds", "done", {"hold_id": saga_id, "asset": "USD", "amount": 40_020}),
        old_step(saga_id, "submit_order", "done", {"status": "filled", "filled": 10_000, "remaining": 0, "fills": 1}),
        old_step(saga_id, "process_fills", "done", {"settled": ["MSFT-7"]}),  # before it released too
        old_step(saga_id, "settle", "done", {"published": ["MSFT-7"], "hold_kept": 40_020}),
    ]
    compensations = [
        old_step(saga_id, "unsettle", "done", {"busted": ["MSFT-7"]}),
        old_step(saga_id, "reverse_fills", "done", {"reversed": ["MSFT-7"]}),  # before voids existed
        old_step(saga_id, "cancel_order", "done", {"order": order}),
        old_step(saga_id, "release_hold", "done", {"hold_kept": 40_020}),
    ]
    blob = msgpack.packb(old_record(saga_id, old_request(saga_id, account, 40_000, 10_000), 40_020, order, steps,
                                    compensations, "compensated"), use_bin_type=True)

    saga = decode(blob)

    assert isinstance(saga.request, PlaceOrder) and saga.request.side is Side.BUY and saga.request.saga_id == saga_id
    assert isinstance(saga.order, OrderResult) and isinstance(saga.order.fills[0], Fill)
    assert saga.order.fills[0].taker_side is Side.BUY
    assert [type(s.result) for s in (*saga.steps, *saga.compensations)] == [
        HoldTaken, OrderSubmitted, FillsSettled, TradesPublished, TradesBusted, FillsReversed, OrderCancelled,
        HoldReleased]
    assert saga.result("process_fills", FillsSettled) == FillsSettled(settled=["MSFT-7"], hold_kept=None)
    assert saga.result("reverse_fills", FillsReversed) == FillsReversed(reversed=["MSFT-7"], voided=[])
    cancelled = saga.result("cancel_order", OrderCancelled)
    assert cancelled is not None and cancelled.order == saga.order


def test_a_record_of_the_current_shape_is_stored_back_byte_for_byte() -> None:
    saga_id, account = "old-2", "bob"
    order = engine_order(saga_id, account)
    steps = [
        old_step(saga_id, "reserve_funds", "done", {"hold_id": saga_id, "asset": "USD", "amount": 40_020}),
        old_step(saga_id, "submit_order", "done", {"status": "filled", "filled": 10_000, "remaining": 0, "fills": 1}),
        old_step(saga_id, "process_fills", "done", {"settled": ["MSFT-7"], "hold_kept": 40_020}),
        old_step(saga_id, "settle", "failed"),
    ]
    compensations = [old_step(saga_id, "reverse_fills", "done", {"reversed": ["MSFT-7"], "voided": []}),
                     old_step(saga_id, "cancel_order", "done", {"order": None}),
                     old_step(saga_id, "release_hold", "pending")]
    blob = msgpack.packb(old_record(saga_id, old_request(saga_id, account, 40_000, 10_000), 40_020, order, steps,
                                    compensations, "compensating"), use_bin_type=True)

    assert encode(decode(blob)) == blob


async def test_a_saga_stored_in_the_old_shape_is_recovered_to_completed(shared: Platform) -> None:
    nc = shared.nc
    seller, buyer = acct("oldsell"), acct("oldbuy")
    await fund(nc, seller, MSFT=10_000)
    await fund(nc, buyer, USD=1_000_000)
    await place(nc, account=seller, instrument="MSFT", side="SELL", price="400.00", qty="1.0000")
    saga_id = f"old-{uuid.uuid4().hex[:10]}"
    request = old_request(saga_id, buyer, 40_000, 10_000)
    _, hold = amounts.hold_for(instrument("MSFT"), Side.BUY, OrderType.LIMIT, 40_000, 10_000, None)
    # What the old code's first two steps did (same op_id and order id): the hold, and the order matched.
    await wallet(nc, "hold", account=buyer, asset="USD", amount=hold, hold_id=saga_id,
                 op_id=f"{saga_id}:reserve_funds")
    body = {k: v for k, v in request.items() if k not in ("saga_id", "inject_failure_step") and v is not None}
    order = await call(nc, matching_subject("MSFT", MatchingEndpoint.SUBMIT), {**body, "order_id": saga_id}, timeout=10)
    assert len(order["fills"]) == 1
    steps = [
        old_step(saga_id, "reserve_funds", "done", {"hold_id": saga_id, "asset": "USD", "amount": hold}),
        old_step(saga_id, "submit_order", "done", {"status": order["status"], "filled": order["filled"],
                                                   "remaining": order["remaining"], "fills": 1}),
        old_step(saga_id, "process_fills", "started"),
        old_step(saga_id, "settle", "pending"),
    ]
    blob = msgpack.packb(old_record(saga_id, request, hold, order, steps, [], "in_progress"), use_bin_type=True)
    assert encode(decode(blob)) == blob  # the engine's own answer, too, is stored back as it was

    # its driver is gone and its lease lapsed: recovery claims it and drives it on
    await (await nc.jetstream().key_value(SAGAS_BUCKET)).create(saga_id, blob)
    await gone_quiet(nc, "gone-host:1")

    final = await wait_final(nc, saga_id)
    assert final["status"] == SagaStatus.COMPLETED, final
    assert final["order_status"] == "filled" and final["filled"] == "1.0000" and final["hold_left"] == "0.00"
    fee = 40_000 * 5 // 10_000
    assert await balances(nc, buyer) == {"USD": (1_000_000 - 40_000 - fee, 0), "MSFT": (10_000, 0)}
    assert await balances(nc, seller) == {"MSFT": (0, 0), "USD": (40_000 - fee, 0)}


def test_a_request_placed_under_rules_changed_since_still_loads() -> None:
    saga_id, account = "old-3", "carol"
    request = old_request(saga_id, account, 40_000, 10_050)  # 1.005 shares: off today's lot step of 0.01
    blob = msgpack.packb(old_record(saga_id, request, 40_221, None, [old_step(saga_id, "reserve_funds", "started")],
                                    [], "in_progress"), use_bin_type=True)

    assert decode(blob).request.qty == 10_050
    assert encode(decode(blob)) == blob


def test_the_saga_detail_schema_documents_a_step_result_as_an_object_as_before() -> None:
    # the typed result must not show in the published schema as the empty, closed `StepResult`
    schema = ClientSagaView.model_json_schema(mode="serialization")
    result = schema["$defs"]["StepRecord"]["properties"]["result"]
    assert result["anyOf"] == [{"type": "object", "additionalProperties": True}, {"type": "null"}]
    assert "StepResult" not in schema["$defs"]
