"""A tiny wallet client for tests: one call per endpoint, errors raised as `QtError`."""

from __future__ import annotations

import uuid
from typing import Any

from nats.aio.client import Client

from contracts.codec import Wire
from contracts.subjects import wallet_subject
from mesh.rpc import call


async def wallet_call(nc: Client, endpoint: str, wire: Wire = Wire.JSON, partition: int = 0,
                      **body: Any) -> dict[str, Any]:
    """Call `wallet.p<partition>.<endpoint>` with `body` (JSON wire by default: amounts are decimal strings)."""
    return await call(nc, wallet_subject(endpoint, partition), body, wire=wire, timeout=10)


def new_account(prefix: str = "acct") -> str:
    """An account name no other test uses (the server and its streams are shared by the session)."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


async def balance(nc: Client, account: str, asset: str = "USD") -> tuple[str, str]:
    """(available, held) of one asset as decimal strings; zeros when the account never had it."""
    reply = await wallet_call(nc, "balance", account=account)
    row = reply["balances"].get(asset)
    return (row["available"], row["held"]) if row else ("0.00", "0.00")


async def event_count(nc: Client, account: str) -> int:
    """How many events the account has (pages through `wallet.events`)."""
    total, after = 0, 0
    while True:
        page = await wallet_call(nc, "events", account=account, after=after, limit=1000)
        total += len(page["events"])
        if page["next_after"] is None:
            return total
        after = page["next_after"]
