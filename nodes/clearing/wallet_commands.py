"""Clearing's wallet commands (hold, release, settle) sent through `wallet.batch` by a smart batcher.

Every saga, cancel and EXEC release calls `hold`/`settle`/`release_down_to` as if alone; the
batcher carries whatever queued while the previous `wallet.batch` was in flight in the next one,
so under load many sagas share one message and one group commit, and at low load a batch is one
command. Each command keeps its own op_id and gets its own result or error: a refused command
fails only its caller, and a transient failure of the whole call (timeout, wallet down, breaker
open) reaches every caller as that transient error, which the saga runner retries as before. One
`WalletCommands` serves one wallet service (one `ServiceClient`, one breaker): a partitioned wallet
gets one per partition subject, each batching on its own.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any

from contracts.errors import ErrorCode, QtError
from contracts.subjects import WalletEndpoint, wallet_partition
from contracts.wallet import MAX_BATCH_COMMANDS
from nodes.runtime.batcher import BatchMetrics, SmartBatcher
from nodes.runtime.client import ServiceClient, is_transient

Reply = dict[str, Any]


class WalletCommands:
    """hold / release / settle to one wallet service, batched; each awaits its own command's result."""

    def __init__(self, client: ServiceClient, *, metrics: BatchMetrics | None = None,
                 max_batch: int = MAX_BATCH_COMMANDS) -> None:
        self.client = client
        self.batcher: SmartBatcher[dict[str, Any], Reply] = SmartBatcher(
            f"{client.service}.{WalletEndpoint.BATCH}", self._send, max_batch=max_batch, metrics=metrics)

    def hold(self, body: dict[str, Any]) -> Awaitable[Reply]:
        """`Hold` (account, asset, amount, hold_id, op_id): its `MutationReply`, or its refusal as `QtError`."""
        return self.batcher.enqueue({"hold": body})

    def settle(self, op_id: str, legs: list[dict[str, Any]]) -> Awaitable[Reply]:
        """`Settle`: the legs applied atomically under `op_id`."""
        return self.batcher.enqueue({"settle": {"op_id": op_id, "legs": legs}})

    async def release_down_to(self, account: str, asset: str, hold_id: str, total_debits: int, op_id: str) -> None:
        """Release hold `hold_id` down to `total_debits` (what it will ever pay out); a hold that never
        existed (refused at reserve, or an order placed without clearing) has nothing to free."""
        try:
            await self.batcher.enqueue({"release": {"account": account, "asset": asset, "hold_id": hold_id,
                                                    "total_debits": total_debits, "op_id": op_id}})
        except QtError as exc:
            if exc.code is not ErrorCode.UNKNOWN_HOLD:
                raise

    async def _send(self, items: list[dict[str, Any]]) -> Sequence[Reply | BaseException]:
        """One `wallet.batch`: idempotent (every item has its op_id), so the client's retries and breaker apply."""
        try:
            reply = await self.client.call(WalletEndpoint.BATCH, {"commands": items}, idempotent=True)
        except QtError as exc:
            if is_transient(exc) or len(items) == 1:
                raise
            # The wallet refused the request as a whole (one malformed item refuses it unapplied):
            # send each item alone, so only the malformed one is refused.
            return await asyncio.gather(*(self._send_alone(item) for item in items), return_exceptions=True)
        return [_result(result) for result in reply["results"]]

    async def _send_alone(self, item: dict[str, Any]) -> Reply:
        result = await self._send([item])
        outcome = result[0]
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def _result(result: dict[str, Any]) -> Reply | QtError:
    error = result.get("error")
    if error is not None:
        return QtError.from_body(error)
    ok: Reply = result["ok"]
    return ok


class WalletRouter:
    """Clearing's wallet: every command goes to the partition that owns its account, each partition
    through its own `WalletCommands` (own batcher, own breaker).

    A settlement whose legs name accounts of several partitions is split into one `settle` per
    partition, each with op_id `<op_id>:p<n>` (one partition keeps the plain op_id, so a mesh of one
    partition sends exactly what it always did). It is done only when every part applied.
    """

    def __init__(self, partitions: Sequence[WalletCommands]) -> None:
        if not partitions:
            raise ValueError("a wallet router needs at least one partition")
        self.partitions = list(partitions)

    def of(self, account: str) -> WalletCommands:
        """The commands client of the partition that owns `account`."""
        return self.partitions[wallet_partition(account, len(self.partitions))]

    def hold(self, body: dict[str, Any]) -> Awaitable[Reply]:
        """`Hold` on the holder's partition."""
        return self.of(body["account"]).hold(body)

    async def release_down_to(self, account: str, asset: str, hold_id: str, total_debits: int, op_id: str) -> None:
        """`WalletCommands.release_down_to` on the holder's partition."""
        await self.of(account).release_down_to(account, asset, hold_id, total_debits, op_id)

    def split(self, op_id: str, legs: list[dict[str, Any]]) -> dict[int, tuple[str, list[dict[str, Any]]]]:
        """`{partition: (op_id of its part, its legs)}`: the legs grouped by their account's partition."""
        count = len(self.partitions)
        parts: dict[int, list[dict[str, Any]]] = {}
        for leg in legs:
            parts.setdefault(wallet_partition(leg["account"], count), []).append(leg)
        return {p: (op_id if count == 1 else f"{op_id}:p{p}", part) for p, part in sorted(parts.items())}

    async def settle(self, op_id: str, legs: list[dict[str, Any]]) -> None:
        """Apply every partition's part; a transient failure of any part is raised first (a retry
        replays the applied parts by their op_ids), else the first refusal."""
        parts = self.split(op_id, legs)
        results = await asyncio.gather(
            *(self.partitions[p].settle(part_op, part) for p, (part_op, part) in parts.items()), return_exceptions=True)
        failures = [r for r in results if isinstance(r, BaseException)]
        for failure in failures:
            if not isinstance(failure, QtError) or is_transient(failure):
                raise failure
        if failures:
            raise failures[0]

    async def reverse(self, settle_op: str, settle_legs: list[dict[str, Any]], op_id: str,
                      bust_legs: list[dict[str, Any]], void_legs: list[dict[str, Any]]) -> bool:
        """Undo one settlement partition by partition: a part that applied (re-sent under its op_id,
        so a part never sent applies first) is reversed by its `bust_legs`; a part refused for good
        moved nothing, and its `void_legs` give each hold's share back. True if any part was voided."""
        settled = self.split(settle_op, settle_legs)
        bust = self.split(op_id, bust_legs)
        void = self.split(op_id, void_legs)

        async def undo(p: int) -> bool:
            try:
                if p in settled:
                    await self.partitions[p].settle(*settled[p])
            except QtError as exc:
                if is_transient(exc):
                    raise
                undoing = void.get(p)
                voided = True
            else:
                undoing = bust.get(p)
                voided = False
            if undoing is not None:
                await self.partitions[p].settle(*undoing)
            return voided

        touched = sorted(set(settled) | set(bust) | set(void))
        return any(await asyncio.gather(*(undo(p) for p in touched)))
