"""`/v1/orders`: place through the saga, cancel, show, list your own (the `clearing` and `matching` services)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from contracts.clearing import CancelRequest, PlaceOrder, SagaGet, SagaList, SagaListReply, SagaView
from contracts.errors import ErrorCode, QtError
from contracts.gateway import GatewayCode
from contracts.matching import OrderQuery, OrderResult
from contracts.subjects import clearing_subject, matching_subject
from gateway.auth import principal
from gateway.openapi import doc, schema
from gateway.payload import derived_id, idempotency_key, read_object, refuse_fields, validate
from gateway.problems import Problem
from gateway.state import Gateway, gateway
from gateway.tokens import Principal

router = APIRouter(prefix="/v1/orders", tags=["orders"])
Who = Annotated[Principal, Depends(principal)]
Gw = Annotated[Gateway, Depends(gateway)]


@router.post("", summary="Place an order",
             **doc(body=schema(PlaceOrder, name="PlaceOrderRequest", drop=("saga_id",)), reply=schema(SagaView),
                   status=201, idempotent=True))
async def place(request: Request, who: Who, gw: Gw) -> Response:
    """Run the place-order saga (hold, match, settle); the saga id (= order id) derives from the Idempotency-Key."""
    key = idempotency_key(request)
    body = await read_object(request)
    refuse_fields(body, ("saga_id",))
    if "inject_failure_step" in body and not who.is_ops:  # a fault drill busts makers' fills: operators only
        raise Problem(GatewayCode.FORBIDDEN, "inject_failure_step needs an ops token", {"role": str(who.role)})
    acting = who.acting_on(body.get("account"))
    saga_id = derived_id(who, acting, key)
    command = validate(PlaceOrder, {**body, "account": acting, "saga_id": saga_id})
    execute = gw.forward(request, clearing_subject("place_order"), command, status=201,
                         headers={"Location": f"/v1/orders/{saga_id}"}, timeout=gw.settings.order_timeout_s)
    return await gw.once(request, who, key, acting, body, execute)


@router.delete("/{order_id}", summary="Cancel an order", **doc(reply=schema(OrderResult), idempotent=True))
async def cancel(request: Request, order_id: str, who: Who, gw: Gw, account: str | None = None) -> Response:
    """Cancel the order and release what is left of its hold; `account` lets ops cancel for another account."""
    key = idempotency_key(request)
    acting = who.acting_on(account)
    body = await read_object(request)
    refuse_fields(body, ("account", "order_id"))
    command = validate(CancelRequest, {**body, "account": acting, "order_id": order_id})
    execute = gw.forward(request, clearing_subject("cancel_order"), command, timeout=gw.settings.order_timeout_s)
    return await gw.once(request, who, key, acting, body, execute)


@router.get("/{order_id}", summary="Show an order", **doc(reply=schema(OrderResult)))
async def show(request: Request, order_id: str, who: Who, gw: Gw) -> Response:
    """The engine's view of one of your orders: status, remaining, every fill."""
    query = validate(SagaGet, {"saga_id": order_id})
    try:
        saga = await gw.call(request, clearing_subject("saga_get"), query)
    except QtError as exc:
        if exc.code is not ErrorCode.NOT_FOUND:
            raise
        saga = None
    if saga is None or (saga.get("account") != who.account and not who.is_ops):  # existence is not disclosed
        raise Problem(ErrorCode.UNKNOWN_ORDER, f"no order {order_id!r}", {"order_id": order_id})
    return await gw.query(request, matching_subject("order"),
                          validate(OrderQuery, {"instrument": saga["instrument"], "order_id": order_id}))


@router.get("", summary="List your orders", **doc(reply=schema(SagaListReply)))
async def list_orders(request: Request, who: Who, gw: Gw, status: str | None = None, account: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50) -> Response:
    """Your newest orders (their sagas) with outcome and fills; ops may name any `account`."""
    query = validate(SagaList, {"account": who.acting_on(account), "status": status, "limit": limit})
    return await gw.query(request, clearing_subject("saga_list"), query)
