"""`qt token`: mint an API token for the gateway, signed with the platform's key under its data dir."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from contracts.errors import ErrorCode, QtError
from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER, TOKEN_TTL_MAX_S, TOKEN_TTL_MIN_S, TOKEN_TTL_S, Role
from gateway.keys import key_paths, load_private
from gateway.tokens import mint
from tooling.ops import DataDirOption, err, fail, out, target


def token(
    ctx: typer.Context,
    account: Annotated[str, typer.Option("--account", help="The account the token acts for (its `sub`).")],
    role: Annotated[Role, typer.Option("--role", help="trader: its own account only; ops: any account and ops "
                                                      "endpoints.")] = Role.TRADER,
    ttl: Annotated[int, typer.Option("--ttl", min=TOKEN_TTL_MIN_S, max=TOKEN_TTL_MAX_S,
                                     help="Lifetime in seconds.")] = TOKEN_TTL_S,
    key: Annotated[Path | None, typer.Option("--key", help="Ed25519 private key (PEM) instead of "
                                             "<data dir>/secrets/jwt-ed25519.pem.", show_default=False)] = None,
    data_dir: DataDirOption = None,
) -> None:
    """Print a token signed with the platform's key (the one its gateway verifies with)."""
    private = key or key_paths(target(ctx, None, data_dir).data_dir.resolve())[0]
    if not private.exists():
        # A key made up here would sign tokens that the running gateway rejects: refuse instead.
        fail(QtError(ErrorCode.NOT_FOUND, f"no token signing key at {private}: the gateway creates it on its "
                     "first start (qt up); point --data-dir or QT_DATA_DIR at that platform's data dir, "
                     "or pass --key"))
    try:
        signed = mint(load_private(private), account=account, role=role, ttl_s=ttl,
                      issuer=os.environ.get("QT_JWT_ISSUER", JWT_ISSUER),
                      audience=os.environ.get("QT_JWT_AUDIENCE", JWT_AUDIENCE))
    except (ValueError, OSError) as exc:
        err.print(f"error validation_error: {exc}", markup=False)
        raise typer.Exit(1) from None
    out.print(signed, markup=False, highlight=False, soft_wrap=True)
