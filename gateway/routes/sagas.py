"""`/v1/sagas`: place-order sagas step by step (the `clearing` service); traders see their own only."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from contracts.clearing import ClientSagaList, ClientSagaView, SagaGet, SagaList
from contracts.errors import ErrorCode
from contracts.subjects import ClearingEndpoint, clearing_subject
from gateway.auth import principal
from gateway.openapi import doc, schema
from gateway.payload import validate
from gateway.problems import Problem
from gateway.state import Gateway, gateway, json_response
from gateway.tokens import Principal
from gateway.views import client_saga, client_saga_list

router = APIRouter(prefix="/v1/sagas", tags=["sagas"])
Who = Annotated[Principal, Depends(principal)]
Gw = Annotated[Gateway, Depends(gateway)]


@router.get("", summary="List sagas", **doc(reply=schema(ClientSagaList)))
async def list_sagas(request: Request, who: Who, gw: Gw, status: str | None = None, account: str | None = None,
                     limit: Annotated[int, Query(ge=1, le=500)] = 50, cursor: str | None = None) -> Response:
    """Sagas newest first, by status; a trader's are its own, ops see every account's unless one is
    named. `next_cursor` in the reply asks for the next page."""
    scope = account if who.is_ops else who.acting_on(account)
    query = validate(SagaList, {"account": scope, "status": status, "limit": limit, "cursor": cursor})
    return json_response(client_saga_list(await gw.call(request, clearing_subject(ClearingEndpoint.SAGA_LIST), query)))


@router.get("/{saga_id}", summary="Show a saga", **doc(reply=schema(ClientSagaView, name="SagaDetail")))
async def show(request: Request, saga_id: str, who: Who, gw: Gw) -> Response:
    """Every step and compensation of a saga: op_ids, timestamps, attempts, results, errors."""
    saga = await gw.call(request, clearing_subject(ClearingEndpoint.SAGA_GET), validate(SagaGet, {"saga_id": saga_id}))
    if saga.get("account") != who.account and not who.is_ops:  # existence is not disclosed
        raise Problem(ErrorCode.NOT_FOUND, f"no saga {saga_id!r}", {"saga_id": saga_id})
    return json_response(client_saga(saga))
