"""The `clearing` micro service: the place-order saga, cancels, saga queries; recovery and EXEC releases.

Endpoints first, then start/stop.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from typing import Any

import msgpack
from nats.aio.client import Client
from nats.js import JetStreamContext

from contracts.clearing import (
    FINAL_STATUSES,
    INJECTED,
    CancelRequest,
    OrderCancelled,
    PlaceOrder,
    SagaGet,
    SagaList,
    SagaListReply,
    SagaPeek,
    SagaPeekReply,
    SagaRecord,
    SagaStatus,
    SagaView,
    StepStatus,
)
from contracts.errors import ErrorCode, QtError
from contracts.instruments import instrument
from contracts.matching import STORED, OrderResult
from contracts.orders import OPEN, client_fill, display_status, order_totals
from contracts.subjects import (
    BUSTS_BUCKET,
    CLEARING_EXEC_CONSUMER,
    CLEARING_SERVICE,
    DLQ_STREAM,
    EXEC_STREAM,
    PRESENCE_BUCKET,
    SAGA_INDEX_BUCKET,
    SAGA_PEEK_ENDPOINT,
    SAGAS_BUCKET,
    TRADES_STREAM,
    WALLET_PARTITIONS_ENV,
    ClearingEndpoint,
    clearing_owner_subject,
    wallet_group,
)
from mesh.jetstream import ensure_named
from mesh.partitions import disagreeing_partitions
from mesh.rpc import call
from nodes.clearing import amounts
from nodes.clearing import saga as machine
from nodes.clearing.exec_releases import EXEC_FILTER, ExecReleases
from nodes.clearing.matching_clients import MatchingClients
from nodes.clearing.recovery import Recovery
from nodes.clearing.runner import SagaRunner
from nodes.clearing.steps import SagaSteps, hold_asset_of
from nodes.clearing.store import BustMarks, KvWrites, SagaIndex, SagaStore
from nodes.clearing.wallet_commands import WalletCommands, WalletRouter
from nodes.runtime.batcher import BatchMetrics
from nodes.runtime.breaker import BreakerRegistry, CircuitBreaker
from nodes.runtime.client import ServiceClient
from nodes.runtime.config import NodeConfig, env_int
from nodes.runtime.connect import connect
from nodes.runtime.durable import DurableWorker
from nodes.runtime.lifecycle import disconnect, until_stopped
from nodes.runtime.log import kv
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.pipeline import PipelinedPublisher
from nodes.runtime.service import NodeService

log = logging.getLogger(__name__)
VERSION = "0.1.0"
#: How long a duplicate place_order waits for the first one before answering its current state, and a
#: cancel for its order's saga to reach the engine (the reply can precede the saga's record).
DUPLICATE_WAIT_S = 8.0
#: How often a request waiting for a saga's record reads it again.
RECORD_POLL_S = 0.05
#: Engine and bust reads in flight at once while a page of sagas is brought up to date.
READS_IN_FLIGHT = 32
#: How long a read waits for the instance driving a saga to say how it has it (a dead one: the stored record).
PEEK_TIMEOUT_S = 0.5
#: Saga records one `saga_list` page reads at most (a status filter that few match pages on by cursor).
SCAN_PER_PAGE = 2_000


def new_saga_id() -> str:
    """Time-ordered (sortable) and random: `s` + hex nanoseconds + 8 random hex digits."""
    return f"s{time.time_ns():x}{secrets.token_hex(4)}"


def request_hash(body: dict[str, Any]) -> str:
    """Digest of a place_order request, to tell a retry from an id reused for another order."""
    return hashlib.sha256(msgpack.packb(sorted(body.items()), use_bin_type=True)).hexdigest()


def view(saga: SagaRecord, *, detail: bool = False, order: OrderResult | None = None,
         busts: frozenset[str] = frozenset()) -> SagaView:
    """What callers see of a saga: outcome, the order as `order` (default: as the saga last saw it)
    with its busted fills, its fee, and what is still held behind it."""
    spec = instrument(saga.instrument)
    order = order if order is not None else saga.order
    raw = order.fills if order is not None else []
    busts = busts | own_busts(saga)
    mine = [client_fill(f, saga.order_id, busted=f.trade_id in busts) for f in raw]
    filled, busted_qty, fee = order_totals(mine)
    completed = saga.status is SagaStatus.COMPLETED
    remaining = order.remaining if completed and order is not None else 0
    hold_left = amounts.hold_left(spec, order) if completed and order is not None else 0
    return SagaView(
        saga_id=saga.saga_id, order_id=saga.order_id, account=saga.account, instrument=saga.instrument,
        side=str(saga.side), status=str(saga.status),
        order_status=None if order is None else display_status(str(order.status), filled, busted_qty),
        qty=order.qty if order is not None else saga.request.qty,
        fills=list(raw), busts=[f.trade_id for f in mine if f.busted],
        filled=filled, busted_qty=busted_qty, remaining=remaining, fee=fee, fee_asset=spec.quote,
        hold_asset=saga.hold_asset, hold_left=hold_left, error=saga.error,
        steps=saga.steps if detail else None, compensations=saga.compensations if detail else None,
    )


def own_busts(saga: SagaRecord) -> frozenset[str]:
    """The taker fills this saga reversed itself (known from its record, marks or not)."""
    if any(c.name == "reverse_fills" and c.status is StepStatus.DONE for c in saga.compensations):
        return frozenset(f.trade_id for f in machine.taker_fills(saga))
    return frozenset()


class ClearingNode:
    """The endpoints over a saga runner."""

    def __init__(self, runner: SagaRunner, steps: SagaSteps, nc: Client) -> None:
        self.runner = runner
        self.store = runner.store
        self.steps = steps
        self.nc = nc
        self._reads = asyncio.Semaphore(READS_IN_FLIGHT)

    def register(self, service: NodeService) -> None:
        """Bind the clearing endpoints, and this instance's own `saga_peek`."""
        service.route(ClearingEndpoint.PLACE_ORDER, PlaceOrder)(self.place_order)
        service.route(ClearingEndpoint.CANCEL_ORDER, CancelRequest)(self.cancel_order)
        service.route(ClearingEndpoint.SAGA_GET, SagaGet)(self.saga_get)
        service.route(ClearingEndpoint.SAGA_LIST, SagaList)(self.saga_list)
        service.route(SAGA_PEEK_ENDPOINT, SagaPeek, subject=clearing_owner_subject(self.runner.owner))(self.saga_peek)

    async def place_order(self, command: PlaceOrder) -> SagaView:
        """Run the saga to its end; a refusal is an error reply, an injected failure a `compensated` view."""
        saga_id = command.saga_id or new_saga_id()
        request = command if command.saga_id else command.model_copy(update={"saga_id": saga_id})
        spec = instrument(command.instrument)
        hold = amounts.hold_for(spec, command.side, command.type, command.price, command.qty, command.max_quote)
        saga = machine.new_saga(saga_id, request, request_hash(request.model_dump(mode="python")), hold,
                                time.time_ns())
        revision = await self.runner.create(saga)
        if revision is None:
            saga = await self._first(saga)
        else:
            saga = await self.runner.drive(saga, revision, reply_first=True)
        return _outcome(saga)

    async def _first(self, mine: SagaRecord) -> SagaRecord:
        """A saga id that exists: the same request gets the first saga's outcome, another one a conflict."""
        saga, _ = await self._await_saga(mine.saga_id, lambda saga: saga is not None and (
            saga.request_hash != mine.request_hash or saga.status in FINAL_STATUSES))
        if saga is None:  # the create found it, but the replica that answered the read lags behind
            raise QtError(ErrorCode.UNAVAILABLE, f"saga {mine.saga_id} exists but is not readable yet; "
                          "retry the same request", {"saga_id": mine.saga_id})
        if saga.request_hash != mine.request_hash:
            raise QtError(ErrorCode.IDEMPOTENCY_CONFLICT,
                          f"saga_id {mine.saga_id!r} was already used for a different order",
                          {"saga_id": mine.saga_id})
        return saga  # final, or as it stands after the duplicate wait

    async def cancel_order(self, command: CancelRequest) -> OrderResult:
        """Cancel in matching, then release the hold down to what the order's fills take."""
        saga = await self._placed(command)
        if saga is not None:
            symbol = saga.instrument
        elif command.instrument is not None:
            symbol = command.instrument
        else:
            raise QtError(ErrorCode.UNKNOWN_ORDER, f"no order {command.order_id!r}", {"order_id": command.order_id})
        spec = instrument(symbol)
        final = await self.steps.cancel(symbol, command.order_id, command.account)
        await self.steps.wallet.release_down_to(command.account, hold_asset_of(spec, final.side), command.order_id,
                                                amounts.of_order(spec, final), f"cancel:{command.order_id}")
        return final

    async def _placed(self, command: CancelRequest) -> SagaRecord | None:
        """The order's saga once it has reached the engine (or ended), None if there is none.

        The place reply goes out before the saga's final record is written, so a cancel sent on that
        reply can read a record still at `submit_order`: it waits for the duplicate wait, then `unavailable`.
        """
        saga, placed = await self._await_saga(command.order_id, lambda saga: saga is None or (
            saga.account != command.account or saga.status in FINAL_STATUSES
            or saga.step("submit_order").status is not StepStatus.PENDING))
        if saga is None:
            return None
        if saga.account != command.account:  # as in matching: another account's order is not disclosed
            raise QtError(ErrorCode.UNKNOWN_ORDER, f"no order {command.order_id!r}", {"order_id": command.order_id})
        if not placed:
            raise QtError(ErrorCode.UNAVAILABLE, f"order {command.order_id} is still being placed; retry",
                          {"saga_id": saga.saga_id})
        return saga

    async def _await_saga(self, saga_id: str, settled: Callable[[SagaRecord | None], bool],
                          ) -> tuple[SagaRecord | None, bool]:
        """Read the saga until `settled` holds or the duplicate wait is over: the last read, and whether it held."""
        deadline = time.monotonic() + DUPLICATE_WAIT_S
        while True:
            saga = await self._read(saga_id)
            if settled(saga):
                return saga, True
            if time.monotonic() > deadline:
                return saga, False
            await asyncio.sleep(RECORD_POLL_S)

    async def saga_get(self, query: SagaGet) -> SagaView:
        """One saga with every step and compensation, and its order as it stands now."""
        saga = await self._read(query.saga_id)
        if saga is None:
            raise QtError(ErrorCode.NOT_FOUND, f"no saga {query.saga_id!r}", {"saga_id": query.saga_id})
        return await self._current(saga, detail=True)

    async def saga_list(self, query: SagaList) -> SagaListReply:
        """A page of sagas newest first from the index (one account's, or all), filtered by status.

        A page reads at most `SCAN_PER_PAGE` records (or `limit`): under a status filter that few
        sagas match it may come back short, and `next_cursor` says where the next one starts.
        """
        positions = await self.store.index.newest(query.account, before=query.cursor)
        scanned = positions[:max(query.limit, SCAN_PER_PAGE)]
        found: list[SagaRecord] = []
        last: str | None = None
        for start in range(0, len(scanned), query.limit):
            chunk = scanned[start:start + query.limit]
            records = await asyncio.gather(*(self._read(saga_id) for _, saga_id in chunk))
            for (position, _), saga in zip(chunk, records, strict=True):
                last = position
                if saga is None or SagaIndex.position(saga) != position:
                    continue  # a create that failed or lost to an existing saga id
                if query.status is None or saga.status is query.status:
                    found.append(saga)
                    if len(found) == query.limit:
                        break
            if len(found) == query.limit:
                break
        more = last is not None and last != positions[-1][0]
        views = await asyncio.gather(*(self._current(saga) for saga in found))
        return SagaListReply(sagas=list(views), next_cursor=last if more else None)

    async def saga_peek(self, query: SagaPeek) -> SagaPeekReply:
        """The saga as this instance replied with it, while its final record is still being written."""
        return SagaPeekReply(record=self.runner.unwritten.get(query.saga_id))

    async def _read(self, saga_id: str) -> SagaRecord | None:
        """The saga as stored, or as its driver's reply gave it while its final record is being written:
        this instance's own, or another live instance's (asked on its `saga_peek`), so a read sent on a
        place reply sees what the reply said whichever instance it reaches."""
        unwritten = self.runner.unwritten.get(saga_id)
        if unwritten is not None:
            return unwritten
        got = await self.store.get(saga_id)
        if got is None:
            return None
        saga = got[0]
        if (saga.status in FINAL_STATUSES or not saga.owner or saga.owner == self.runner.owner
                or saga.lease_until_ms < time.time() * 1000):  # no other live driver to ask
            return saga
        return await self._peek(saga)

    async def _peek(self, stored: SagaRecord) -> SagaRecord:
        """The saga as its driver has it, or `stored` when the driver has nothing newer or does not answer."""
        try:
            reply = await call(self.nc, clearing_owner_subject(stored.owner), {"saga_id": stored.saga_id},
                               timeout=PEEK_TIMEOUT_S)
            record = SagaPeekReply.model_validate(reply, strict=False, context={STORED: True}).record
        except Exception as exc:  # gone, slow or odd: the stored record is still a true (older) state
            log.debug("saga peek failed", extra=kv(saga=stored.saga_id, owner=stored.owner, error=repr(exc)))
            return stored
        if record is None or record.saga_id != stored.saga_id or record.owner != stored.owner:
            return stored
        return record

    async def _current(self, saga: SagaRecord, *, detail: bool = False) -> SagaView:
        """The saga's view with its order as it stands: the engine's record when the saga last saw
        it open (it may have filled as maker or been cancelled since), and its busted trades."""
        async with self._reads:
            order = saga.order
            cancelled = saga.result("cancel_order", OrderCancelled)
            if cancelled is not None and cancelled.order is not None:
                order = cancelled.order
            elif saga.status is SagaStatus.COMPLETED and order is not None and order.status in OPEN:
                order = await self.steps.order(saga.instrument, saga.order_id)
            busts = await self.steps.busts.of(saga.order_id)
        return view(saga, detail=detail, order=order, busts=busts)


def _outcome(saga: SagaRecord) -> SagaView:
    """A failure the caller did not ask for is an error reply; the rest is the saga's view."""
    error = saga.error
    if saga.status in (SagaStatus.COMPENSATED, SagaStatus.FAILED) and error and error.get("code") != INJECTED:
        try:
            code = ErrorCode(str(error.get("code")))
        except ValueError:
            code = ErrorCode.INTERNAL
        raise QtError(code, str(error.get("message", "")), {"saga_id": saga.saga_id, "status": str(saga.status),
                                                             "step": error.get("step")})
    return view(saga)


async def serve(config: NodeConfig, stop: asyncio.Event) -> None:
    """Serve place/cancel, recover abandoned sagas and release EXEC-cancelled holds until `stop`."""
    nc = await connect(config, name=f"{CLEARING_SERVICE}-{os.getpid()}")
    partitions = env_int(WALLET_PARTITIONS_ENV, 1)
    other = await disagreeing_partitions(nc, partitions)
    if other is not None:  # holds and settles would reach partitions that refuse them
        log.error("clearing refuses to start: partition count mismatch", extra=kv(partitions=partitions, wallets=other))
        await nc.close()
        raise SystemExit(2)
    js: JetStreamContext = nc.jetstream()
    await ensure_named(js, streams=(TRADES_STREAM, DLQ_STREAM, EXEC_STREAM),
                       buckets=(SAGAS_BUCKET, SAGA_INDEX_BUCKET, BUSTS_BUCKET, PRESENCE_BUCKET))
    breakers = BreakerRegistry()
    timeout_s = env_int("QT_CLEARING_CALL_TIMEOUT_MS", 5000) / 1000
    wallet_clients = [ServiceClient(nc, wallet_group(p), breaker=breakers.add(CircuitBreaker(wallet_group(p))),
                                    timeout_s=timeout_s)
                      for p in range(partitions)]
    matching = MatchingClients(nc, breakers, timeout_s=timeout_s)
    metrics = NodeMetrics(CLEARING_SERVICE)
    batch_metrics = BatchMetrics(metrics.registry)
    wallet_commands = WalletRouter([WalletCommands(client, metrics=batch_metrics) for client in wallet_clients])
    publisher = PipelinedPublisher(nc, timeout_s=timeout_s)  # TRADES and saga record writes
    await publisher.start()
    steps = SagaSteps(wallet_commands, matching, publisher, fee_account=os.environ.get("QT_FEE_ACCOUNT", "venue-fees"),
                      busts=BustMarks(await js.key_value(BUSTS_BUCKET)))
    writes = KvWrites(publisher, metrics=batch_metrics)
    index = SagaIndex(js, writes, SAGA_INDEX_BUCKET)
    store = SagaStore(await js.key_value(SAGAS_BUCKET), index, writes, SAGAS_BUCKET)
    indexed = await store.index.backfill(SAGAS_BUCKET)
    if indexed:
        log.info("saga index backfilled", extra=kv(sagas=indexed))
    runner = SagaRunner(store, steps, metrics, lease_s=env_int("QT_SAGA_LEASE_S", 15),
                        checkpoint_each=os.environ.get("QT_SAGA_CHECKPOINT", "") == "each",
                        crash_at=os.environ.get("QT_CRASH_AT") or None,
                        final_delay_s=float(os.environ.get("QT_FINAL_WRITE_DELAY_S", "0")))
    node = ClearingNode(runner, steps, nc)
    service = NodeService(nc, name=CLEARING_SERVICE, version=VERSION, metrics=metrics, breakers=breakers,
                          description="place-order saga: hold, match, settle, publish; recovery and DLQ")
    node.register(service)
    worker = DurableWorker(js, nc, stream=EXEC_STREAM, consumer=CLEARING_EXEC_CONSUMER, filter_subjects=EXEC_FILTER,
                           service=CLEARING_SERVICE, handler=ExecReleases(wallet_commands, matching))
    worker.register(service)
    recovery = Recovery(runner, js, await js.key_value(PRESENCE_BUCKET), lease_s=runner.lease_s,
                        every_s=env_int("QT_SAGA_RECOVERY_MS", 1000) / 1000)
    await recovery.announce()
    recovery_task = asyncio.create_task(recovery.run(stop), name="recovery")
    await worker.start()
    await service.start()
    checkpoint = "each" if runner.checkpoint_each else "batched"
    log.info("clearing serving", extra=kv(owner=runner.owner, checkpoint=checkpoint))
    for _, exc in await until_stopped(stop, (recovery_task,)):
        log.error("clearing stopping", extra=kv(reason=repr(exc)))
    await service.stop()
    await runner.flush()
    await worker.stop()
    stop.set()
    await asyncio.wait({recovery_task}, timeout=5)
    await disconnect(nc)

