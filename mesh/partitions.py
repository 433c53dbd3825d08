"""Ops-wide wallet reads (`verify`, `rebuild` of every account): ask every partition, merge the replies.

A partition that does not answer fails the whole request and is named: a merged "ok" that silently
skipped a ledger would be a lie.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError

from contracts.codec import loads
from contracts.errors import ErrorCode, QtError
from contracts.subjects import WALLET_PARTITIONS_METADATA, WALLET_SERVICE


async def every_partition(partitions: Iterable[int],
                          ask: Callable[[int], Awaitable[dict[str, Any]]]) -> list[dict[str, Any]]:
    """`ask(p)` of each partition at once, replies in that order; raises `unavailable` naming each
    partition that did not answer (a refusal, e.g. a validation error, is raised as it is)."""
    asked = list(partitions)
    replies = await asyncio.gather(*(ask(p) for p in asked), return_exceptions=True)
    failed = {f"p{p}": reply for p, reply in zip(asked, replies, strict=True) if isinstance(reply, BaseException)}
    if not failed:
        return [reply for reply in replies if not isinstance(reply, BaseException)]
    for error in failed.values():
        if isinstance(error, QtError) and error.code not in (ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT):
            raise error
    names = ", ".join(failed)
    raise QtError(ErrorCode.UNAVAILABLE, f"wallet partition {names} did not answer",
                  {"partitions": {name: str(error) or type(error).__name__ for name, error in failed.items()}})


async def announced_partitions(nc: Client, timeout_s: float = 2.0) -> int | None:
    """The wallet partition count a running wallet announces in its `$SRV.INFO` metadata; None when no
    wallet answers (or an older one announces none)."""
    try:
        msg = await nc.request(f"$SRV.INFO.{WALLET_SERVICE}", b"", timeout=timeout_s)
    except (NatsError, TimeoutError):
        return None
    metadata = (loads(msg.data) or {}).get("metadata") or {}
    raw = metadata.get(WALLET_PARTITIONS_METADATA)
    return int(raw) if raw and str(raw).isdigit() and int(raw) >= 1 else None


async def disagreeing_partitions(nc: Client, partitions: int, timeout_s: float = 2.0) -> int | None:
    """The partition count the running wallets announce when it is not `partitions`; None when they agree
    or none answers (nothing to compare with yet)."""
    announced = await announced_partitions(nc, timeout_s)
    return None if announced in (None, partitions) else announced


def merge_verify(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """One `VerifyReply` of every partition: ok only if all are, counts summed, the first bad event of
    the lowest partition that has one."""
    return {
        "ok": all(r["ok"] for r in replies),
        "events_checked": sum(r["events_checked"] for r in replies),
        "snapshots_checked": sum(r["snapshots_checked"] for r in replies),
        "first_bad": next((r["first_bad"] for r in replies if r.get("first_bad")), None),
    }


def merge_rebuild(replies: list[dict[str, Any]]) -> dict[str, Any]:
    """One `RebuildReply` of every partition: identical only if all are, counts summed, lists joined,
    `elapsed_us` of the slowest (they ran at the same time)."""
    return {
        "identical": all(r["identical"] for r in replies),
        "accounts": sum(r["accounts"] for r in replies),
        "events_replayed": sum(r["events_replayed"] for r in replies),
        "snapshots_used": sum(r["snapshots_used"] for r in replies),
        "before": [row for r in replies for row in r["before"]],
        "after": [row for r in replies for row in r["after"]],
        "mismatches": [row for r in replies for row in r["mismatches"]],
        "elapsed_us": max(r["elapsed_us"] for r in replies),
    }
