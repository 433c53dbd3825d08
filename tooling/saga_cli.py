"""`qt saga ...` and `qt order ...`: place-order sagas and the orders behind them."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from contracts.clearing import CancelRequest, PlaceOrder, SagaGet, SagaList
from contracts.matching import OrderQuery
from contracts.subjects import ClearingEndpoint, MatchingEndpoint, clearing_subject, matching_subject
from tooling import render
from tooling.ops import DataDirOption, NatsUrlOption, out, request, run, target, validate

saga_app = typer.Typer(help="Place-order sagas: list them, show one step by step.", no_args_is_help=True)
order_app = typer.Typer(help="Orders through the saga: place, cancel, show.", no_args_is_help=True)
# Lets click pass `-1` through as a quantity so the contract refuses it with its own code.
VALUE_SETTINGS: dict[str, Any] = {"ignore_unknown_options": True}


@saga_app.command("ls")
def saga_ls(
    ctx: typer.Context,
    status: Annotated[str | None, typer.Option("--status", help="Only this status, e.g. in_progress.")] = None,
    account: Annotated[str | None, typer.Option("--account", help="Only this account's sagas.")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", help="At most this many, newest first.")] = 50,
    cursor: Annotated[str | None, typer.Option("--cursor", help="The next page, as the last page said.")] = None,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Sagas newest first with their outcome and their order's current status, a page at a time."""
    query = validate(SagaList, {"status": status, "account": account, "limit": limit, "cursor": cursor})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: request(nc, clearing_subject(ClearingEndpoint.SAGA_LIST), query))
    out.print(render.sagas(reply["sagas"], reply.get("next_cursor")))


@saga_app.command("show")
def saga_show(ctx: typer.Context, saga_id: Annotated[str, typer.Argument(help="Saga id (= order id).")],
              nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Every step and compensation of a saga: op_ids, timestamps, attempts, results, errors."""
    query = validate(SagaGet, {"saga_id": saga_id})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: request(nc, clearing_subject(ClearingEndpoint.SAGA_GET), query))
    out.print(render.saga(reply))


@order_app.command("place", context_settings=VALUE_SETTINGS)
def order_place(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="Account placing the order.")],
    instrument: Annotated[str, typer.Argument(help="e.g. AAPL, BTC-USD.")],
    side: Annotated[str, typer.Argument(help="BUY or SELL.")],
    qty: Annotated[str, typer.Argument(help='Quantity as a decimal string, e.g. "1.5".')],
    price: Annotated[str | None, typer.Option("--price", help="Limit price (not for MARKET).")] = None,
    type_: Annotated[str, typer.Option("--type", help="LIMIT or MARKET.")] = "LIMIT",
    tif: Annotated[str, typer.Option("--tif", help="GTC, IOC or FOK.")] = "GTC",
    max_quote: Annotated[str | None, typer.Option("--max-quote", help="MARKET BUY: most quote to spend.")] = None,
    saga_id: Annotated[str | None, typer.Option("--saga-id", help="Idempotency key: a retry answers the first.")]
    = None,
    inject: Annotated[str | None, typer.Option("--inject-failure", help="e.g. settle or after:submit_order.")]
    = None,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Place an order through the saga (hold, match, settle) and print its outcome."""
    body = {"account": account, "instrument": instrument, "side": side.upper(), "qty": qty, "price": price,
            "type": type_.upper(), "tif": tif.upper(), "max_quote": max_quote, "saga_id": saga_id,
            "inject_failure_step": inject}
    command = validate(PlaceOrder, {k: v for k, v in body.items() if v is not None})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: request(nc, clearing_subject(ClearingEndpoint.PLACE_ORDER), command, timeout=30))
    out.print(render.saga(reply))


@order_app.command("cancel")
def order_cancel(
    ctx: typer.Context,
    account: Annotated[str, typer.Argument(help="The order's account.")],
    order_id: Annotated[str, typer.Argument(help="Order id (= saga id).")],
    instrument: Annotated[str | None, typer.Option("--instrument", help="Only for orders placed without a saga.")]
    = None,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Cancel an order and release what is left of its hold."""
    command = validate(CancelRequest, {"account": account, "order_id": order_id, "instrument": instrument})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: request(nc, clearing_subject(ClearingEndpoint.CANCEL_ORDER), command, timeout=30))
    out.print(render.order(reply))


@order_app.command("show")
def order_show(
    ctx: typer.Context,
    order_id: Annotated[str, typer.Argument(help="Order id (= saga id).")],
    instrument: Annotated[str | None, typer.Option("--instrument", help="An order placed without a saga: "
                                                   "the engine's record only.")] = None,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """An order as it stands: status, filled, busted, remaining, fee, every fill (busts flagged)."""
    if instrument is not None:
        query = validate(OrderQuery, {"instrument": instrument, "order_id": order_id})
        out.print(render.order(run(target(ctx, nats_url, data_dir), lambda nc: request(
            nc, matching_subject(query.instrument, MatchingEndpoint.ORDER), query))))
        return
    saga = validate(SagaGet, {"saga_id": order_id})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: request(nc, clearing_subject(ClearingEndpoint.SAGA_GET), saga))
    reply.pop("steps", None)
    reply.pop("compensations", None)
    out.print(render.saga(reply))
