"""Releases the holds of orders the engine cancelled or shrank on its own: IOC/FOK remainders,
self-trade prevention, or a cancel sent to matching directly. Fed by a durable consumer of EXEC.

Each release goes down to the order's total debits as the engine knows them now, so it is safe
whether or not the order's saga or a cancel already released, and in whatever order they arrive.
"""

from __future__ import annotations

from typing import Any, Final

from contracts.errors import QtError
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
#: Failed reports an error names one by one (it ends up in a DLQ header of bounded length).
NAMED_MAX: Final = 3


class ExecReleases:
    """The EXEC handler: one release per cancelled or decreased order, op_id from the message's msg-id
    and the report's place in it."""

    def __init__(self, wallet: WalletRouter, matching: MatchingClients) -> None:
        self.wallet = wallet
        self.matching = matching

    async def __call__(self, msg: DeliveredMessage) -> None:
        msg_id = msg.headers.get("Nats-Msg-Id") or f"seq:{msg.stream_seq}"
        reports = exec_reports(msg.data)
        failed: list[tuple[int, dict[str, Any], Exception]] = []
        for n, report in enumerate(reports):
            if report.get("kind") not in SHRINKING:
                continue
            try:
                # a message of one report (the older layout) keeps the op_id it had then
                await self._release(report, f"exec:{msg_id}" if len(reports) == 1 else f"exec:{msg_id}:{n}")
            except Exception as exc:  # the others still go: a redelivery or a DLQ replay repeats only no-ops for them
                failed.append((n, report, exc))
        if failed:
            raise _naming_reports(failed, len(reports)) from failed[0][2]

    async def _release(self, report: dict[str, Any], op_id: str) -> None:
        spec = instrument(report["instrument"])
        reply = await self.matching.call(MatchingEndpoint.ORDER,
                                         {"instrument": spec.symbol, "order_id": report["order_id"]}, idempotent=True)
        order = OrderResult.model_validate(reply)
        await self.wallet.release_down_to(order.account, hold_asset_of(spec, order.side), order.order_id,
                                          amounts.of_order(spec, order), op_id)


def _naming_reports(failed: list[tuple[int, dict[str, Any], Exception]], count: int) -> Exception:
    """The first failure, reworded to say which reports of the entry failed (the DLQ shows the message's
    last error, and its other reports were released): a contract error keeps its code, so a replay that
    meets the wallet still down answers `unavailable` as before."""
    first = failed[0][2]
    which = ", ".join(f"{i} (order {r.get('order_id')})" for i, r, _ in failed[:NAMED_MAX])
    more = f" and {len(failed) - NAMED_MAX} more" if len(failed) > NAMED_MAX else ""
    text = f"release of report {which}{more} of {count} failed: "
    if isinstance(first, QtError):
        return QtError(first.code, text + first.message,
                       {**first.detail, "reports": [i for i, _, _ in failed]})
    return ReleaseFailed(text + f"{type(first).__name__}: {first}")


class ReleaseFailed(Exception):
    """A release of an entry's report failed for a reason outside the contract (a bug: it is parked)."""
