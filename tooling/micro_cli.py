"""`qt req` and `qt micro ls`: what the `nats` CLI offers an operator, for machines without it."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from mesh.rpc import call, discover
from tooling import render
from tooling.ops import DataDirOption, NatsUrlOption, err, fail, out, run, target

micro_app = typer.Typer(help="NATS micro services: every instance and its endpoints (like `nats micro ls`).",
                        no_args_is_help=True)
#: Subjects a request may go to: tokens of printable ASCII without spaces; no wildcards (`*`, `>`),
#: which name many subjects and cannot be requested.
FORBIDDEN_IN_SUBJECT = frozenset(" \t\r\n*>")


def request_subject(subject: str) -> str:
    """The subject, or `validation_error` saying what is wrong with it."""
    tokens = subject.split(".")
    if (not subject or any(not token for token in tokens) or not subject.isascii()
            or any(ch in FORBIDDEN_IN_SUBJECT for ch in subject)):
        raise QtError(ErrorCode.VALIDATION, f"subject {subject!r} is not a NATS subject one can request: "
                      "dot-separated tokens, no spaces, no wildcards (* or >)")
    return subject


def request_body(text: str) -> dict[str, Any]:
    """The JSON object argument, or `validation_error` naming where the JSON is broken."""
    try:
        body = json.loads(text)
    except ValueError as exc:
        raise QtError(ErrorCode.VALIDATION, f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise QtError(ErrorCode.VALIDATION, f"the request body must be a JSON object, got {type(body).__name__}")
    return body


def req(
    ctx: typer.Context,
    subject: Annotated[str, typer.Argument(help="e.g. wallet.p0.balance, clearing.saga_get, matching.AAPL.book.")],
    body: Annotated[str, typer.Argument(help='The request as a JSON object, e.g. \'{"account":"alice"}\'.')] = "{}",
    timeout: Annotated[float, typer.Option("--timeout", min=0.1, max=300, help="Seconds to wait for the reply.")]
    = 5.0,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Send one request as the ops user (JSON in, JSON out); an error reply exits 1 (like `nats req`)."""
    try:
        checked = request_subject(subject), request_body(body)
    except QtError as exc:
        fail(exc)
    reply = run(target(ctx, nats_url, data_dir),
                lambda nc: call(nc, checked[0], checked[1], wire=Wire.JSON, timeout=timeout))
    out.print(json.dumps(reply, indent=2, ensure_ascii=False), markup=False, highlight=False, soft_wrap=True)


@micro_app.command("ls")
def micro_ls(
    ctx: typer.Context,
    wait: Annotated[float, typer.Option("--wait", min=0.1, max=30, help="Seconds to gather replies.")] = 0.5,
    nats_url: NatsUrlOption = None,
    data_dir: DataDirOption = None,
) -> None:
    """Every micro service instance with its version and endpoints (`$SRV.INFO`)."""
    instances = run(target(ctx, nats_url, data_dir), lambda nc: discover(nc, wait))
    if not instances:
        err.print("no micro services answered", markup=False)
        raise typer.Exit(1)
    out.print(render.micro(instances))
