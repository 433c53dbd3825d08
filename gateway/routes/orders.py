"""`/v1/orders`: place through the saga, cancel, show, list your own (the `clearing` and `matching` services)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from contracts.clearing import (
    CancelRequest,
    ClientSagaList,
    ClientSagaView,
    PlaceOrder,
    SagaGet,
    SagaList,
    SagaView,
)
from contracts.errors import ErrorCode, QtError
from contracts.gateway import GatewayCode
from contracts.matching import OrderResult
from contracts.orders import ClientOrderResult
from contracts.subjects import ClearingEndpoint, clearing_subject
from gateway.auth import principal
from gateway.openapi import doc, schema
from gateway.payload import derived_id, idempotency_key, read_object, refuse_fields, validate
from gateway.problems import Problem
from gateway.state import Gateway, gateway, json_response
from gateway.tokens import Principal
from gateway.views import client_order, client_saga, client_saga_list

router = APIRouter(prefix="/v1/orders", tags=["orders"])
Who = Annotated[Principal, Depends(principal)]
Gw = Annotated[Gateway, Depends(gateway)]


@router.post("", summary="Place an order",
             **doc(body=schema(PlaceOrder, name="PlaceOrderRequest", drop=("saga_id",)), reply=schema(ClientSagaView),
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
    execute = gw.forward(request, clearing_subject(ClearingEndpoint.PLACE_ORDER), command, status=201,
                         headers={"Location": f"/v1/orders/{saga_id}"}, timeout=gw.settings.order_timeout_s,
                         shape=client_saga, reply=SagaView)
    # clearing runs a saga id once, so the key's record is written once, with the answer
    return await gw.once(request, who, key, acting, body, execute, deduped=True)


@router.delete("/{order_id}", summary="Cancel an order", **doc(reply=schema(ClientOrderResult), idempotent=True))
async def cancel(request: Request, order_id: str, who: Who, gw: Gw, account: str | None = None) -> Response:
    """Cancel the order and release what is left of its hold; `account` lets ops cancel for another account."""
    key = idempotency_key(request)
    acting = who.acting_on(account)
    body = await read_object(request)
    refuse_fields(body, ("account", "order_id"))
    command = validate(CancelRequest, {**body, "account": acting, "order_id": order_id})
    execute = gw.forward(request, clearing_subject(ClearingEndpoint.CANCEL_ORDER), command,
                         timeout=gw.settings.order_timeout_s, shape=client_order, reply=OrderResult)
    return await gw.once(request, who, key, acting, body, execute)


@router.get("/{order_id}", summary="Show an order", **doc(reply=schema(ClientSagaView)))
async def show(request: Request, order_id: str, who: Who, gw: Gw) -> Response:
    """One of your orders as it stands: status, filled, remaining, fee, and your side of every fill
    (busted fills flagged)."""
    query = validate(SagaGet, {"saga_id": order_id})
    try:
        saga = await gw.call(request, clearing_subject(ClearingEndpoint.SAGA_GET), query)
    except QtError as exc:
        if exc.code is not ErrorCode.NOT_FOUND:
            raise
        saga = None
    if saga is None or (saga.get("account") != who.account and not who.is_ops):  # existence is not disclosed
        raise Problem(ErrorCode.UNKNOWN_ORDER, f"no order {order_id!r}", {"order_id": order_id})
    saga.pop("steps", None)
    saga.pop("compensations", None)
    return json_response(client_saga(saga))


@router.get("", summary="List your orders", **doc(reply=schema(ClientSagaList)))
async def list_orders(request: Request, who: Who, gw: Gw, status: str | None = None, account: str | None = None,
                      limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None) -> Response:
    """Your orders (their sagas) newest first with their current status, fills and fees; ops may
    name any `account`. `next_cursor` in the reply asks for the next page."""
    query = validate(SagaList, {"account": who.acting_on(account), "status": status, "limit": limit,
                                "cursor": cursor})
    return json_response(client_saga_list(await gw.call(request, clearing_subject(ClearingEndpoint.SAGA_LIST), query)))
