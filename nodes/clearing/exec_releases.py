"""Releases the holds of orders the engine cancelled or shrank on its own: IOC/FOK remainders,
self-trade prevention, or a cancel sent to matching directly. Fed by a durable consumer of EXEC.

Each release goes down to the order's total debits as the engine knows them now, so it is safe
whether or not the order's saga or a cancel already released, and in whatever order they arrive.
"""

from __future__ import annotations

from typing import Any, Final

from contracts.instruments import instrument
from contracts.matching import OrderResult, exec_reports
from contracts.subjects import MatchingEndpoint, exec_subject
from nodes.clearing import amounts
from nodes.clearing.matching_clients import MatchingClients
from nodes.clearing.steps import hold_asset_of
from nodes.clearing.wallet_commands import WalletRouter
from nodes.runtime.durable import DeliveredMessage

#: Execution reports after which an order may hold more than it still needs.
SHRINKING: Final = ("cancelled", "decreased")
#: What the EXEC consumer takes: every journal entry's reports, and the shrinking kinds of a stream
#: written when each report was a message of its own on `exec.<instrument>.<kind>`.
EXEC_FILTER: Final = (exec_subject("*"), *(f"exec.*.{kind}" for kind in SHRINKING))


class ExecReleases:
    """The EXEC handler: one release per cancelled or decreased order, op_id from the message's msg-id
    and the report's place in it."""

    def __init__(self, wallet: WalletRouter, matching: MatchingClients) -> None:
        self.wallet = wallet
        self.matching = matching

    async def __call__(self, msg: DeliveredMessage) -> None:
        msg_id = msg.headers.get("Nats-Msg-Id") or f"seq:{msg.stream_seq}"
        reports = exec_reports(msg.data)
        failed: Exception | None = None
        for n, report in enumerate(reports):
            if report.get("kind") not in SHRINKING:
                continue
            try:
                # a message of one report (the older layout) keeps the op_id it had then
                await self._release(report, f"exec:{msg_id}" if len(reports) == 1 else f"exec:{msg_id}:{n}")
            except Exception as exc:  # the others still go: a redelivery or a DLQ replay repeats only no-ops for them
                failed = failed or exc
        if failed is not None:
            raise failed

    async def _release(self, report: dict[str, Any], op_id: str) -> None:
        spec = instrument(report["instrument"])
        reply = await self.matching.call(MatchingEndpoint.ORDER,
                                         {"instrument": spec.symbol, "order_id": report["order_id"]}, idempotent=True)
        order = OrderResult.model_validate(reply)
        await self.wallet.release_down_to(order.account, hold_asset_of(spec, order.side), order.order_id,
                                          amounts.of_order(spec, order), op_id)
