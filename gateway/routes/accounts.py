"""`/v1/accounts/{account}/...`: deposits, withdrawals, balances, events, rebuild, verify (the `wallet` service)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from contracts.base import INT64_MAX
from contracts.subjects import WalletEndpoint, wallet_account_subject
from contracts.wallet import (
    BalanceQuery,
    BalanceReply,
    Deposit,
    EventsQuery,
    EventsReply,
    MutationReply,
    RebuildCommand,
    RebuildReply,
    VerifyCommand,
    VerifyReply,
    Withdraw,
)
from gateway.auth import ops, principal
from gateway.openapi import doc, schema
from gateway.payload import derived_id, idempotency_key, read_object, refuse_fields, validate
from gateway.problems import Problem
from gateway.state import Gateway, gateway
from gateway.tokens import Principal

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])
Who = Annotated[Principal, Depends(principal)]
Ops = Annotated[Principal, Depends(ops)]
Gw = Annotated[Gateway, Depends(gateway)]
#: Filled in by the gateway: the account from the path, the op_id from the Idempotency-Key.
SET_BY_GATEWAY = ("account", "op_id")


@router.post("/{account}/deposits", summary="Deposit into an account (ops)",
             **doc(body=schema(Deposit, name="DepositRequest", drop=SET_BY_GATEWAY), reply=schema(MutationReply),
                   idempotent=True, partitioned=True))
async def deposit(request: Request, account: str, who: Ops, gw: Gw) -> Response:
    """Add `amount` of `asset` to the account's available balance (op_id derived from the Idempotency-Key).

    Money enters the venue only through an operator: a trader's token is `forbidden` here.
    """
    return await _move(request, account, who, gw, "deposit", Deposit)


@router.post("/{account}/withdrawals", summary="Withdraw from an account (ops)",
             **doc(body=schema(Withdraw, name="WithdrawRequest", drop=SET_BY_GATEWAY), reply=schema(MutationReply),
                   idempotent=True, partitioned=True))
async def withdraw(request: Request, account: str, who: Ops, gw: Gw) -> Response:
    """Take `amount` of `asset` out of the account's available balance (ops, like deposits)."""
    return await _move(request, account, who, gw, "withdraw", Withdraw)


async def _move(request: Request, account: str, who: Principal, gw: Gateway, endpoint: str,
                model: type[Deposit]) -> Response:
    key = idempotency_key(request)
    acting = who.acting_on(account)
    body = await read_object(request)
    refuse_fields(body, ("op_id",))
    if body.get("account", acting) != acting:
        raise Problem.validation("account: differs from the account in the path")
    command = validate(model, {**body, "account": acting, "op_id": derived_id(who, acting, key)})
    # the wallet applies an op_id once, so the key's record is written once, with the answer
    forward = gw.forward(request, _subject(gw, endpoint, acting), command, reply=MutationReply)
    return await gw.once(request, who, key, acting, body, forward, deduped=True)


@router.get("/{account}/balances", summary="Balances of an account",
            **doc(reply=schema(BalanceReply), partitioned=True))
async def balances(request: Request, account: str, who: Who, gw: Gw) -> Response:
    """Available and held per asset."""
    query = validate(BalanceQuery, {"account": who.acting_on(account)})
    return await gw.query(request, _subject(gw, WalletEndpoint.BALANCE, query.account), query)


@router.get("/{account}/events", summary="Event log of an account",
            **doc(reply=schema(EventsReply), partitioned=True))
async def events(request: Request, account: str, who: Who, gw: Gw, asset: str | None = None,
                 after: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0,
                 limit: Annotated[int, Query(ge=1, le=1000)] = 100, newest_first: bool = False,
                 before: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None) -> Response:
    """The account's hash-chained events: oldest first after the `after` cursor (`next_after`), or with
    `newest_first` down from the newest, then below the `before` cursor (`next_before`)."""
    query = validate(EventsQuery, {"account": who.acting_on(account), "asset": asset, "after": after, "limit": limit,
                                   "newest_first": newest_first, "before": before})
    return await gw.query(request, _subject(gw, WalletEndpoint.EVENTS, query.account), query)


@router.get("/{account}/verify", summary="Verify an account's hash chain",
            **doc(reply=schema(VerifyReply), partitioned=True))
async def verify(request: Request, account: str, who: Who, gw: Gw) -> Response:
    """Recompute the account's hash chain and snapshots from genesis; name the first bad event."""
    command = validate(VerifyCommand, {"account": who.acting_on(account)})
    return await gw.query(request, _subject(gw, WalletEndpoint.VERIFY, command.account or ""), command)


@router.post("/{account}/rebuild", summary="Rebuild an account's balances (ops)",
             **doc(reply=schema(RebuildReply), idempotent=True, partitioned=True))
async def rebuild(request: Request, account: str, who: Ops, gw: Gw) -> Response:
    """Replay the account's projection from its latest snapshots and prove it identical."""
    key = idempotency_key(request)
    body = await read_object(request)
    refuse_fields(body, ("account",))
    command = validate(RebuildCommand, {**body, "account": account})
    subject = _subject(gw, WalletEndpoint.REBUILD, command.account or "")
    return await gw.once(request, who, key, account, body, gw.forward(request, subject, command, timeout=60))


def _subject(gw: Gateway, endpoint: str, account: str) -> str:
    """The endpoint on the wallet partition that owns `account`."""
    return wallet_account_subject(endpoint, account, gw.settings.wallet_partitions)
