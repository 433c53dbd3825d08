"""Releases the holds of orders the engine cancelled or shrank on its own: IOC/FOK remainders,
self-trade prevention, or a cancel sent to matching directly. Fed by a durable consumer of EXEC.

Each release goes down to the order's total debits as the engine knows them now, so it is safe
whether or not the order's saga or a cancel already released, and in whatever order they arrive.
"""

from __future__ import annotations

from typing import Final

import msgpack

from contracts.instruments import instrument
from contracts.matching import OrderResult
from contracts.subjects import MatchingEndpoint, exec_subject
from nodes.clearing import amounts
from nodes.clearing.matching_clients import MatchingClients
from nodes.clearing.steps import hold_asset_of
from nodes.clearing.wallet_commands import WalletRouter
from nodes.runtime.durable import DeliveredMessage

#: Execution reports after which an order may hold more than it still needs.
SHRINKING: Final = ("cancelled", "decreased")
#: What the EXEC consumer takes: only those kinds (fills, accepts and the rest stay on the server).
EXEC_FILTER: Final = tuple(exec_subject("*", kind) for kind in SHRINKING)


class ExecReleases:
    """The EXEC handler: one release per cancelled or decreased order, op_id from the report's msg-id."""

    def __init__(self, wallet: WalletRouter, matching: MatchingClients) -> None:
        self.wallet = wallet
        self.matching = matching

    async def __call__(self, msg: DeliveredMessage) -> None:
        report = msgpack.unpackb(msg.data, raw=False)
        if report.get("kind") not in SHRINKING:
            return
        spec = instrument(report["instrument"])
        reply = await self.matching.call(MatchingEndpoint.ORDER,
                                         {"instrument": spec.symbol, "order_id": report["order_id"]}, idempotent=True)
        order = OrderResult.model_validate(reply)
        msg_id = msg.headers.get("Nats-Msg-Id") or f"{spec.symbol}:seq:{msg.stream_seq}"
        await self.wallet.release_down_to(order.account, hold_asset_of(spec, order.side), order.order_id,
                                          amounts.of_order(spec, order), f"exec:{msg_id}")
