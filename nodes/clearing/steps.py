"""The bodies of the saga's steps and compensations: the calls to wallet, matching and TRADES.

Every call carries an op_id (or a deterministic order id / msg-id) derived from the saga, so running
a body twice, after a crash or a lost reply, changes nothing the second time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Final, Literal

import msgpack

from contracts.clearing import (
    FillsReversed,
    FillsSettled,
    HoldReleased,
    HoldTaken,
    OrderCancelled,
    OrderSubmitted,
    SagaRecord,
    StepResult,
    TradeEvent,
    TradesBusted,
    TradesPublished,
)
from contracts.errors import ErrorCode, QtError
from contracts.instruments import Instrument, instrument
from contracts.matching import Fill, OrderResult, Side
from contracts.orders import fill_fees
from contracts.subjects import MatchingEndpoint, trades_subject
from nodes.clearing import amounts
from nodes.clearing.matching_clients import MatchingClients
from nodes.clearing.saga import taker_fills
from nodes.clearing.store import BustMarks
from nodes.clearing.wallet_commands import WalletRouter
from nodes.runtime.pipeline import PipelinedPublisher, PublishFailed
from nodes.runtime.tracing import inject

#: Request fields that are the saga's, not the order's.
_SAGA_ONLY: Final = {"saga_id", "inject_failure_step"}
#: A step or compensation body: runs against the saga record and reports what it did.
Body = Callable[[SagaRecord], Awaitable[StepResult]]


def hold_asset_of(spec: Instrument, side: str) -> str:
    """The asset an order on `side` holds: quote to buy, base to sell."""
    return spec.quote if side == Side.BUY else spec.base


class SagaSteps:
    """Runs step and compensation bodies against the wallet, the engine and the TRADES stream."""

    def __init__(self, wallet: WalletRouter, matching: MatchingClients, trades: PipelinedPublisher, fee_account: str,
                 busts: BustMarks):
        self.wallet = wallet
        self.matching = matching
        self.trades = trades
        self.fee_account = fee_account
        self.busts = busts

    def table(self) -> dict[str, Body]:
        """Every step and compensation body by name (`SagaRunner` checks it names exactly
        `STEPS` and `COMPENSATIONS`)."""
        return {
            "reserve_funds": self.reserve_funds, "submit_order": self.submit_order,
            "process_fills": self.process_fills, "settle": self.settle,
            "unsettle": self.unsettle, "reverse_fills": self.reverse_fills,
            "cancel_order": self.cancel_order, "release_hold": self.release_hold,
        }

    # --- forward ------------------------------------------------------------------------------------

    async def reserve_funds(self, saga: SagaRecord) -> HoldTaken:
        """Hold the order's funds under the order id."""
        await self.wallet.hold({
            "account": saga.account, "asset": saga.hold_asset, "amount": saga.hold_amount,
            "hold_id": saga.order_id, "op_id": saga.step("reserve_funds").op_id,
        })
        return HoldTaken(hold_id=saga.order_id, asset=saga.hold_asset, amount=saga.hold_amount)

    async def submit_order(self, saga: SagaRecord) -> OrderSubmitted:
        """Journal the order (order id = saga id: a resubmission answers the first result)."""
        body = saga.request.model_dump(mode="python", exclude=_SAGA_ONLY, exclude_none=True)
        reply = await self.matching.call(MatchingEndpoint.SUBMIT, {**body, "order_id": saga.order_id},
                                         idempotent=True)
        result = saga.order = OrderResult.model_validate(reply)
        return OrderSubmitted(status=result.status, filled=result.filled, remaining=result.remaining,
                              fills=len(result.fills))

    async def process_fills(self, saga: SagaRecord) -> FillsSettled:
        """Settle both sides of every fill, each fill atomically, and release what the order no longer
        needs: one wallet message and one group commit for all of them.

        The release is the settle step's (its op_id): it converges on the order's total debits in any
        order, so doing it with the fills leaves the settle step only the TRADES publish.
        """
        fills = taker_fills(saga)
        work = [self._settle_fill(saga, fill) for fill in fills]
        keep = self._keep(saga)
        if keep < saga.hold_amount:  # a plain resting order needs all of its hold: no call at all
            work.append(self.wallet.release_down_to(saga.account, saga.hold_asset, saga.order_id, keep,
                                                    saga.step("settle").op_id))
        await asyncio.gather(*work)
        return FillsSettled(settled=[f.trade_id for f in fills], hold_kept=keep)

    async def settle(self, saga: SagaRecord) -> TradesPublished:
        """Publish the settled trades (acks awaited together); release what the order no longer needs
        unless process_fills did (a record written before it did so)."""
        fills = taker_fills(saga)
        work = [self._publish(saga, fills, "trade")]
        keep = self._keep(saga)
        settled = saga.result("process_fills", FillsSettled)
        if keep < saga.hold_amount and (settled is None or settled.hold_kept is None):
            work.append(self.wallet.release_down_to(saga.account, saga.hold_asset, saga.order_id, keep,
                                                    saga.step("settle").op_id))
        await asyncio.gather(*work)
        return TradesPublished(published=[f.trade_id for f in fills], hold_kept=keep)

    # --- compensations --------------------------------------------------------------------------------

    async def unsettle(self, saga: SagaRecord) -> TradesBusted:
        """Publish a bust for every trade this saga may have published."""
        fills = taker_fills(saga)
        await self._publish(saga, fills, "bust")
        return TradesBusted(busted=[f.trade_id for f in fills])

    async def reverse_fills(self, saga: SagaRecord) -> FillsReversed:
        """Bust each fill: settle it if it never was (same op_id), then reverse it into available; a fill
        whose settlement is refused (it moved nothing) is voided instead: each hold's share comes back."""
        spec = instrument(saga.instrument)
        op_id = saga.step("reverse_fills").op_id
        voided: list[str] = []

        async def bust(fill: Fill) -> None:
            # per wallet partition: a part that applied is reversed, a part refused for good is voided
            if await self.wallet.reverse(
                self._settle_op(saga, fill), amounts.settle_legs(spec, fill, self.fee_account),
                f"{op_id}:{fill.trade_id}", amounts.bust_legs(spec, fill, self.fee_account),
                amounts.void_legs(spec, fill),
            ):
                voided.append(fill.trade_id)
            # after the reversal (a crash in between re-runs this body): both orders' views show the bust
            await asyncio.gather(self.busts.add(fill.maker_order_id, fill.trade_id),
                                 self.busts.add(fill.taker_order_id, fill.trade_id))

        fills = taker_fills(saga)
        await asyncio.gather(*(bust(f) for f in fills))
        return FillsReversed(reversed=[f.trade_id for f in fills], voided=sorted(voided))

    async def cancel_order(self, saga: SagaRecord) -> OrderCancelled:
        """Cancel what rests of the order; its final state decides what the hold still owes."""
        try:
            final = await self.cancel(saga.instrument, saga.order_id, saga.account)
        except QtError as exc:
            if exc.code is not ErrorCode.UNKNOWN_ORDER:
                raise
            return OrderCancelled(order=None)
        return OrderCancelled(order=final)

    async def cancel(self, symbol: str, order_id: str, account: str) -> OrderResult:
        """Cancel in matching and return the order's final record with every fill it ever had
        (a cancel's own answer lists only the fills it made, i.e. none)."""
        await self.matching.call(MatchingEndpoint.CANCEL,
                                 {"order_id": order_id, "account": account, "instrument": symbol}, idempotent=True)
        return await self.order(symbol, order_id)

    async def order(self, symbol: str, order_id: str) -> OrderResult:
        """The engine's record of an order: terms, status, remaining and all its fills."""
        reply = await self.matching.call(MatchingEndpoint.ORDER, {"instrument": symbol, "order_id": order_id},
                                         idempotent=True)
        return OrderResult.model_validate(reply)

    async def release_hold(self, saga: SagaRecord) -> HoldReleased:
        """Release the hold down to what the order's fills (as taker and maker) take out of it."""
        cancelled = saga.result("cancel_order", OrderCancelled)
        final = cancelled.order if cancelled is not None else saga.order
        keep = amounts.of_order(instrument(saga.instrument), final) if final is not None else 0
        await self.wallet.release_down_to(saga.account, saga.hold_asset, saga.order_id, keep,
                                          saga.step("release_hold").op_id)
        return HoldReleased(hold_kept=keep)

    # --- shared ---------------------------------------------------------------------------------------

    @staticmethod
    def _keep(saga: SagaRecord) -> int:
        """What the order's hold still pays out, from the engine's answer to the submit."""
        spec = instrument(saga.instrument)
        if saga.order is None:  # never submitted: nothing will be paid out
            return amounts.total_debits(spec, saga.side, None, 0, 0, 0)
        return amounts.of_order(spec, saga.order)

    async def _settle_fill(self, saga: SagaRecord, fill: Fill) -> None:
        legs = amounts.settle_legs(instrument(saga.instrument), fill, self.fee_account)
        await self.wallet.settle(self._settle_op(saga, fill), legs)

    @staticmethod
    def _settle_op(saga: SagaRecord, fill: Fill) -> str:
        """op_id of a fill's settlement (each wallet partition's part appends `:p<n>`)."""
        return f"{saga.step('process_fills').op_id}:{fill.trade_id}"

    async def _publish(self, saga: SagaRecord, fills: list[Fill], kind: Literal["trade", "bust"]) -> None:
        """One TRADES message per fill (msg-id: the trade id, or `bust:` + it), pipelined: acks awaited together."""
        if not fills:
            return
        messages = [(trades_subject(saga.instrument), _trade_event(saga, fill, kind),
                     inject({"Nats-Msg-Id": fill.trade_id if kind == "trade" else f"bust:{fill.trade_id}"}))
                    for fill in fills]
        try:
            await self.trades.publish(messages)
        except PublishFailed as exc:  # TRADES did not take them (yet): the msg-ids make a re-run harmless
            raise QtError(ErrorCode.UNAVAILABLE, f"TRADES publish: {exc}"[:200]) from exc


def _trade_event(saga: SagaRecord, fill: Fill, kind: Literal["trade", "bust"]) -> bytes:
    spec = instrument(saga.instrument)
    quote, buyer_fee, seller_fee = fill_fees(spec, fill)
    taker_buys = fill.taker_side is Side.BUY
    event = TradeEvent(
        kind=kind, trade_id=fill.trade_id, instrument=saga.instrument, price=fill.price, qty=fill.qty,
        quote=quote, maker_fee=seller_fee if taker_buys else buyer_fee,
        taker_fee=buyer_fee if taker_buys else seller_fee, maker_order_id=fill.maker_order_id,
        taker_order_id=fill.taker_order_id, maker_account=fill.maker_account,
        taker_account=fill.taker_account, taker_side=fill.taker_side, saga_id=saga.saga_id,
        ts_ns=time.time_ns(),
    )
    blob: bytes = msgpack.packb(event.model_dump(mode="python"))
    return blob
