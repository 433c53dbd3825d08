"""`qt dlq ...`: the messages durable consumers gave up on, and replaying one through its service."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from nats.aio.client import Client

from contracts.dlq import DlqEntry, DlqReplay, dlq_replay_subject
from contracts.errors import ErrorCode, QtError
from contracts.subjects import DLQ_SERVICE
from mesh.dlq import list_parked, read_parked
from tooling import render
from tooling.ops import DataDirOption, NatsUrlOption, out, request, run, target, validate

dlq_app = typer.Typer(help="Dead letters: list parked messages, replay one through the service that parked it.",
                      no_args_is_help=True)


@dlq_app.command(name="ls")
def ls(
    ctx: typer.Context,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="Show at most this many, oldest first.")] = 100,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Parked messages, oldest first: origin stream/subject/seq, consumer, service, last error."""
    entries, total = run(target(ctx, nats_url, data_dir), lambda nc: parked(nc, limit))
    if not entries:
        out.print("no parked messages", markup=False)
        return
    out.print(render.dlq(entries))
    if total > len(entries):
        out.print(f"showing {len(entries)} of {total} parked messages (--limit {limit})", markup=False)


@dlq_app.command()
def replay(
    ctx: typer.Context,
    seq: Annotated[int, typer.Argument(help="DLQ stream sequence, as `qt dlq ls` shows it.")],
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Run a parked message through its consumer's handler again; on success it leaves DLQ."""
    command = validate(DlqReplay, {"seq": seq})
    reply = run(target(ctx, nats_url, data_dir), lambda nc: send_back(nc, command))
    out.print(f"DLQ seq {reply['seq']} ({reply['origin_stream']} seq {reply['origin_seq']}): {reply['outcome']}",
              markup=False)


async def parked(nc: Client, limit: int) -> tuple[list[DlqEntry], int]:
    """Up to `limit` parked messages, oldest first, and how many are parked in all."""
    return await list_parked(nc.jetstream(), limit)


async def send_back(nc: Client, command: DlqReplay) -> dict[str, Any]:
    """Ask the service named on the parked message to replay it."""
    msg = await read_parked(nc.jetstream(), command.seq)
    service = (msg.headers or {}).get(DLQ_SERVICE)
    if not service:
        raise QtError(ErrorCode.VALIDATION, f"DLQ seq {command.seq} names no service ({DLQ_SERVICE} header)")
    return await request(nc, dlq_replay_subject(service), command)
