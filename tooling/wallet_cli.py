"""`qt wallet ...`: money in and out, balances, the event log, rebuild and verify."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from nats.aio.client import Client

from contracts.errors import ErrorCode, QtError
from contracts.subjects import WalletEndpoint, wallet_partition, wallet_subject
from contracts.wallet import (
    BalanceQuery,
    Deposit,
    EventsQuery,
    RebuildCommand,
    VerifyCommand,
    Withdraw,
)
from mesh.partitions import every_partition, merge_rebuild, merge_verify
from tooling import render
from tooling.ops import (
    DataDirOption,
    NatsUrlOption,
    fail,
    out,
    request,
    run,
    target,
    validate,
    wallet_partitions,
    wallet_request,
)

app = typer.Typer(help="The wallet service: deposit, withdraw, balance, events, rebuild, verify.",
                  no_args_is_help=True)

AccountArg = Annotated[str, typer.Argument(help="Account name, e.g. alice.")]
AssetArg = Annotated[str, typer.Argument(help="Asset code, e.g. USD, AAPL, BTC.")]
AmountArg = Annotated[str, typer.Argument(help='Decimal string within the asset\'s scale, e.g. "12.34".')]
OpIdOption = Annotated[
    str | None,
    typer.Option("--op-id", show_default=False,
                 help="Idempotency key: a retry with the same one changes nothing (default: a new uuid4 hex)."),
]
# Without this, click reads an amount such as `-5` as an unknown option and never lets the
# contract refuse it with `invalid_amount`.
AMOUNT_SETTINGS: dict[str, Any] = {"ignore_unknown_options": True}


def _move(ctx: typer.Context, endpoint: str, account: str, asset: str, amount: str, op_id: str | None,
          nats_url: str | None, data_dir: Path | None) -> None:
    """Validate locally (nothing is sent when refused), then deposit or withdraw once per op_id."""
    op = op_id if op_id is not None else uuid.uuid4().hex
    model = Deposit if endpoint == "deposit" else Withdraw
    command = validate(model, {"account": account, "asset": asset, "amount": amount, "op_id": op})
    if op_id is None:  # printed before sending, so a timed-out command can be retried safely
        out.print(f"op_id {op}  (retry safely with --op-id {op})", markup=False)
    reply = run(target(ctx, nats_url, data_dir), lambda nc: wallet_request(nc, endpoint, account, command))
    direction = "to" if endpoint == "deposit" else "from"
    out.print(f"{endpoint} of {amount} {asset} {direction} {account}: done (op_id {op})", markup=False)
    out.print(render.changes(reply))


@app.command(context_settings=AMOUNT_SETTINGS)
def deposit(ctx: typer.Context, account: AccountArg, asset: AssetArg, amount: AmountArg,
            op_id: OpIdOption = None, nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Add money to an account's available balance (idempotent per --op-id)."""
    _move(ctx, "deposit", account, asset, amount, op_id, nats_url, data_dir)


@app.command(context_settings=AMOUNT_SETTINGS)
def withdraw(ctx: typer.Context, account: AccountArg, asset: AssetArg, amount: AmountArg,
             op_id: OpIdOption = None, nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Take money out of an account's available balance (idempotent per --op-id)."""
    _move(ctx, "withdraw", account, asset, amount, op_id, nats_url, data_dir)


@app.command()
def balance(ctx: typer.Context, account: AccountArg, nats_url: NatsUrlOption = None,
            data_dir: DataDirOption = None) -> None:
    """Every asset of an account: available and held."""
    query = validate(BalanceQuery, {"account": account})
    reply = run(target(ctx, nats_url, data_dir), lambda nc: wallet_request(nc, WalletEndpoint.BALANCE, account, query))
    if not reply.get("balances"):  # the wallet knows an account only by the money it ever held
        fail(QtError(ErrorCode.UNKNOWN_ACCOUNT, f"unknown account {account}: no money was ever deposited to it"))
    out.print(render.balances(reply))


@app.command()
def events(
    ctx: typer.Context,
    account: AccountArg,
    asset: Annotated[str | None, typer.Option("--asset", help="Only this asset.", show_default=False)] = None,
    before: Annotated[int | None, typer.Option("--before", help="Cursor (newest first): the last seq already "
                                               "seen.", show_default=False)] = None,
    after: Annotated[int | None, typer.Option("--after", help="Cursor (--oldest-first): the last seq already "
                                              "seen.", show_default=False)] = None,
    oldest_first: Annotated[bool, typer.Option("--oldest-first", help="Page from the first event on.")] = False,
    limit: Annotated[int, typer.Option("--limit", help="Page size (1..1000).")] = 100,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Page through an account's events, newest first (--oldest-first to start from the first)."""
    body: dict[str, Any] = {"account": account, "limit": limit, "newest_first": not oldest_first}
    if asset is not None:
        body["asset"] = asset
    if after is not None:
        body["after"] = after
    if before is not None:
        body["before"] = before
    query = validate(EventsQuery, body)
    reply = run(target(ctx, nats_url, data_dir), lambda nc: wallet_request(nc, WalletEndpoint.EVENTS, account, query))
    out.print(render.events(reply, account))
    flag, cursor = ("--after", reply.get("next_after")) if oldest_first else ("--before", reply.get("next_before"))
    more = f"next: {flag} {cursor}" + (" --oldest-first" if oldest_first else "")
    out.print(more if cursor is not None else "next: none (end of events)", markup=False)


@app.command()
def rebuild(ctx: typer.Context,
            account: Annotated[str | None, typer.Argument(help="Only this account; all when omitted.")] = None,
            nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Replay events from the latest snapshots and prove the projections identical (repairs drift)."""
    command = validate(RebuildCommand, {"account": account} if account else {})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: _each_partition(nc, WalletEndpoint.REBUILD, command, merge_rebuild))
    out.print(render.rebuild(reply))
    if reply["mismatches"]:
        out.print(render.mismatches(reply))


@app.command()
def verify(ctx: typer.Context,
           account: Annotated[str | None, typer.Argument(help="Only this account; all when omitted.")] = None,
           nats_url: NatsUrlOption = None, data_dir: DataDirOption = None) -> None:
    """Check the hash chain and every snapshot from genesis; exit 1 unless all is well."""
    command = validate(VerifyCommand, {"account": account} if account else {})
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: _each_partition(nc, WalletEndpoint.VERIFY, command, merge_verify))
    out.print(render.verify(reply))
    if not reply["ok"]:
        raise typer.Exit(1)


async def _each_partition(nc: Client, endpoint: str, command: RebuildCommand | VerifyCommand,
                          merge: Callable[[list[dict[str, Any]]], dict[str, Any]]) -> dict[str, Any]:
    """One account's partition, or (no account) every partition with the replies merged; a partition
    that does not answer is named in the error."""
    partitions = await wallet_partitions(nc)
    owners = [wallet_partition(command.account, partitions)] if command.account else range(partitions)
    timeout = 120.0  # a full rebuild or verify of a big ledger takes a while
    return merge(await every_partition(owners, lambda p: request(nc, wallet_subject(endpoint, p), command, timeout)))
