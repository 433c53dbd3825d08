"""CLI plumbing shared by every command: where the mesh is, how to call it, how to refuse."""

from __future__ import annotations

import asyncio
import logging
import os
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from nats.aio.client import Client
from pydantic import BaseModel, ValidationError
from rich.console import Console

from contracts.codec import Wire
from contracts.credentials import nkey_seed_path
from contracts.errors import ErrorCode, QtError, validation_error
from contracts.subjects import WALLET_PARTITIONS_ENV, wallet_account_subject
from mesh.partitions import announced_partitions
from mesh.rpc import call
from tooling.connection import default_data_dir, default_url, ops_connect

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)


def console(*, stderr: bool = False) -> Console:
    """A console that keeps piped output on one line per row instead of wrapping at 80 columns."""
    made = Console(stderr=stderr, highlight=False, soft_wrap=True)
    if not made.is_terminal and "COLUMNS" not in os.environ:
        made.width = 240
    return made


out = console()
err = console(stderr=True)

NatsUrlOption = Annotated[
    str | None,
    typer.Option("--nats-url", help="NATS server URL(s), comma-separated (env QT_NATS_URL).", show_default=False),
]
DataDirOption = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Platform data dir holding secrets/ops.nk (env QT_DATA_DIR).",
                 show_default=False),
]


@dataclass(frozen=True)
class Target:
    """Which mesh a command talks to."""

    nats_url: str
    data_dir: Path


def target(ctx: typer.Context, nats_url: str | None = None, data_dir: Path | None = None) -> Target:
    """Resolve a command's option, else the global option, else the environment, else defaults."""
    root = ctx.find_root().obj
    base = root if isinstance(root, Target) else Target(default_url(), default_data_dir())
    return Target(nats_url or base.nats_url, data_dir or base.data_dir)


def quiet_nats_logs() -> None:
    """Keep nats.py's connection tracebacks off the terminal: the CLI reports one line instead."""
    logger = logging.getLogger("nats")
    logger.addHandler(logging.NullHandler())
    logger.propagate = False


def fail(error: QtError) -> NoReturn:
    """Print `error <code>: <message>` on stderr and exit 1."""
    err.print(f"error {error.code}: {error.message}", markup=False)
    raise typer.Exit(1)


def validate(model: type[M], body: dict[str, Any]) -> M:
    """Validate CLI input as the node will (JSON wire: decimal strings); refuse locally on error."""
    try:
        return model.model_validate(body, context={"wire": Wire.JSON})
    except QtError as exc:
        fail(exc)
    except ValidationError as exc:
        fail(validation_error(exc.errors(include_url=False, include_input=False)))


async def connect(where: Target) -> Client:
    """Connect as the `ops` user, turning every connection failure into `unavailable`."""
    quiet_nats_logs()
    try:
        return await ops_connect(where.nats_url, where.data_dir)
    except Exception as exc:  # nats.py raises a zoo of types here; the operator needs one line
        seed = nkey_seed_path(where.data_dir.resolve(), "ops")
        hint = "" if seed.exists() else f" (no ops seed at {seed}: pass --data-dir or set QT_DATA_DIR)"
        reason = str(exc) or type(exc).__name__
        raise QtError(ErrorCode.UNAVAILABLE, f"cannot reach NATS at {where.nats_url}: {reason}{hint}") from None


def run(where: Target, action: Callable[[Client], Awaitable[T]]) -> T:
    """Connect, run `action`, close; any `QtError` becomes `error <code>: <message>` and exit 1."""

    async def main() -> T:
        nc = await connect(where)
        try:
            return await action(nc)
        finally:
            await nc.close()

    try:
        return asyncio.run(main())
    except QtError as exc:
        fail(exc)


async def request(nc: Client, subject: str, message: BaseModel, timeout: float = 5.0) -> dict[str, Any]:
    """Call an endpoint on the JSON wire so amounts come back as decimal strings."""
    body = message.model_dump(mode="python", context={"wire": Wire.JSON}, exclude_none=True)
    return await call(nc, subject, body, wire=Wire.JSON, timeout=timeout)


_ANNOUNCED: weakref.WeakKeyDictionary[Client, int] = weakref.WeakKeyDictionary()


async def wallet_partitions(nc: Client) -> int:
    """The mesh's wallet partition count: `QT_WALLET_PARTITIONS` when set, else what a running wallet
    announces, else 1."""
    raw = os.environ.get(WALLET_PARTITIONS_ENV)
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise QtError(ErrorCode.VALIDATION, f"{WALLET_PARTITIONS_ENV} must be a whole number >= 1, got {raw!r}")
        return int(raw)
    if nc not in _ANNOUNCED:  # asked once per connection: the count is fixed for a mesh's life
        _ANNOUNCED[nc] = await announced_partitions(nc) or 1
    return _ANNOUNCED[nc]


async def wallet_request(nc: Client, endpoint: str, account: str, message: BaseModel,
                         timeout: float = 5.0) -> dict[str, Any]:
    """`request` to the wallet partition that owns `account`."""
    return await request(nc, wallet_account_subject(endpoint, account, await wallet_partitions(nc)), message, timeout)


# --- discovery: micro services and JetStream ------------------------------------------------------

def breakers(instance: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The breaker states a node reports in its `$SRV.STATS` endpoint data (`{"breakers": {name: {...}}}`)."""
    found: dict[str, dict[str, Any]] = {}
    for endpoint in (instance.get("stats") or {}).get("endpoints") or []:
        data = endpoint.get("data")
        if isinstance(data, dict) and isinstance(data.get("breakers"), dict):
            found.update(data["breakers"])
    return found
