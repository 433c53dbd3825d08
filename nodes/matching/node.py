"""The `matching` micro service: journal commands to ORDERS (many per message under load), answer
each once the engine applied it.

Endpoints first, then the per-instrument loop that applies the journal, then start/stop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Iterable
from typing import Any

import msgpack
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg
from nats.js.errors import NotFoundError
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel

from contracts.errors import ErrorCode, QtError
from contracts.instruments import INSTRUMENTS, Instrument, instrument
from contracts.matching import (
    BookQuery,
    BookView,
    CancelOrder,
    InstrumentStatus,
    OrderQuery,
    OrderResultView,
    ReplaceOrder,
    StatusQuery,
    StatusReply,
    SubmitOrder,
)
from contracts.subjects import (
    EXEC_REPORTS_MAX,
    EXEC_STREAM,
    FENCE_HEADER,
    LEASES_BUCKET,
    MATCHING_INSTRUMENT_ENDPOINTS,
    MATCHING_SERVICE,
    ORDERS_STREAM,
    SNAPSHOTS_OBJECTS,
    MatchingEndpoint,
    book_feed_subject,
    exec_msg_id,
    exec_subject,
    matching_subject,
    orders_subject,
)
from mesh.backoff import Backoff
from mesh.heap import settle_heap
from mesh.jetstream import ensure_named, ensure_snapshot_store
from nodes.matching import BOOK_BUILD
from nodes.matching.engine import CANCEL, NEW, REPLACE, InstrumentEngine, command_key
from nodes.matching.forked_pack import pack_in_child
from nodes.matching.journal import JournalWriter
from nodes.runtime.config import NodeConfig, env_int
from nodes.runtime.connect import connect
from nodes.runtime.lease import Lease, LeaseLost
from nodes.runtime.lifecycle import disconnect, until_stopped
from nodes.runtime.log import kv
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.pipeline import PipelinedPublisher
from nodes.runtime.service import Handler, NodeService
from nodes.runtime.tails import StreamTail
from nodes.runtime.tracing import handling, inject, trace_headers

log = logging.getLogger(__name__)
VERSION = "0.1.0"
#: How often an idle journal tail asks the server whether its consumer still exists.
#: Waits between attempts to publish execution reports while NATS is away.
PUBLISH_RETRY = Backoff()
CONSUMER_CHECK_S = 2.0
_REJECT_CODES = {code.value: code for code in ErrorCode}
#: Most EXEC messages (one per journal entry) sent before their acks are awaited (bounds what one failure re-sends).
EXEC_BATCH = 2000
_TRACER = trace.get_tracer("qt.matching")


class InstrumentRunner:
    """Applies one instrument's journal in stream order and publishes what the engine reports."""

    def __init__(self, js: JetStreamContext, nc: Client, spec: Instrument, lease: Lease, snapshot_every: int):
        self.js = js
        self.nc = nc
        self.spec = spec
        self.lease = lease
        self.snapshot_every = snapshot_every
        self.engine = InstrumentEngine(spec)
        self.last_snapshot_seq = 0
        self.exec_published_upto = 0
        self.feed_seq = 0
        self.writer = JournalWriter(js, orders_subject(spec.symbol))
        self._waiters: dict[int, asyncio.Future[None]] = {}
        """Journal sequence -> set once the engine has applied it (every command of a batch waits on one)."""
        # execution reports applied but not yet published: (journal seq, msg-id, subject, body, trace headers)
        self._pending: list[tuple[int, str, str, bytes, dict[str, str]]] = []
        self.publisher = PipelinedPublisher(nc)
        self._wake = asyncio.Event()
        self._flushing = asyncio.Lock()
        self.journal_end = 0
        """The journal's last sequence when the engine loaded: its state is current once applied."""
        self.current = asyncio.Event()
        """Set once the engine has applied `journal_end`: only then may the node answer anything."""
        self._snapshotting: asyncio.Task[None] | None = None
        """The snapshot being written to the store while the engine keeps applying (one at a time)."""

    async def load(self) -> None:
        """Restore the newest snapshot (if any) and learn how far EXEC already got."""
        try:
            obs = await self.js.object_store(SNAPSHOTS_OBJECTS)
            blob = (await obs.get(f"matching.{self.spec.symbol}")).data
        except NotFoundError:
            blob = None
        if blob:
            self.engine = InstrumentEngine.restore(self.spec, msgpack.unpackb(blob, raw=False, strict_map_key=False))
            self.last_snapshot_seq = self.engine.applied_seq
        try:
            last = await self._last_exec()
            msg_id = (last.headers or {}).get("Nats-Msg-Id", "")
            last_entry = int(msg_id.split(":")[1])
            # A crash mid-publish may have cut the last entry's reports short: unless the snapshot covers
            # it (one is written only once everything before it is published), publish that entry again;
            # its msg-ids drop the reports the stream already holds.
            self.exec_published_upto = last_entry if self.engine.applied_seq >= last_entry else last_entry - 1
        except (NotFoundError, IndexError, ValueError):
            self.exec_published_upto = 0
        try:
            self.journal_end = (await self.js.get_last_msg(ORDERS_STREAM, orders_subject(self.spec.symbol))).seq or 0
        except NotFoundError:
            self.journal_end = 0
        if self.engine.applied_seq >= self.journal_end:
            self.current.set()
        log.info("engine loaded", extra=kv(instrument=self.spec.symbol, applied_seq=self.engine.applied_seq,
                                           exec_upto=self.exec_published_upto, journal_end=self.journal_end))

    async def _last_exec(self) -> RawStreamMsg:
        """The newest EXEC message of this instrument; `NotFoundError` when there is none. A stream written
        before entries were one message holds reports on `exec.<instrument>.<kind>` or `exec.<instrument>`."""
        found: list[RawStreamMsg] = []
        for subject in (f"exec.{self.spec.symbol}.*", f"exec.{self.spec.symbol}"):
            with contextlib.suppress(NotFoundError):
                found.append(await self.js.get_last_msg(EXEC_STREAM, subject))
        if not found:
            raise NotFoundError
        return max(found, key=lambda m: m.seq or 0)

    async def execute(self, key: str, entry: dict[str, Any]) -> dict[str, Any]:
        """Journal a command (batched with whatever else is waiting) and return its result once applied.

        A command key the engine already applied is answered from its first result without journaling
        it again (a client's retry, e.g. after the engine restarted mid-request); a cancel or replace that
        found no order is not such a result, and is journaled again.
        """
        found = self.engine.results.get(key)
        if found is not None:
            return found
        refused = self.engine.refusals.get(key)
        # A key refused before (its order had not arrived) is journaled again under a new msg-id: the
        # stream's duplicate window would otherwise hand back the old entry and its refusal.
        journal_key = key if refused is None else f"{key}#after:{refused['journal_seq']}"
        seq = await self.writer.append(journal_key, entry)
        found = await self.result(seq, key)
        if found is None:  # refused at `seq`, and that refusal is forgotten already: ask the engine again
            seq = await self.writer.append(f"{key}#after:{seq}", entry)
            found = await self.result(seq, key)
        if found is None:
            raise QtError(ErrorCode.UNAVAILABLE, f"the result of {key} was forgotten under load; retry")
        return found

    async def result(self, seq: int, key: str) -> dict[str, Any] | None:
        """The result of command `key` journaled in entry `seq` once the engine has applied it; None when
        it was a refusal the engine has forgotten since (see `InstrumentEngine.refusals`)."""
        if self.engine.applied_seq < seq:
            future = self._waiters.get(seq)
            if future is None:
                future = self._waiters[seq] = asyncio.get_running_loop().create_future()
            await asyncio.shield(future)
        return self.engine.results.get(key) or self.engine.refusals.get(key)

    async def run(self) -> None:
        """Consume `orders.<instrument>` from after the snapshot, forever; publishing runs alongside."""
        tasks = {asyncio.create_task(self._apply_forever(), name=f"apply-{self.spec.symbol}"),
                 asyncio.create_task(self._publish_forever(), name=f"exec-{self.spec.symbol}")}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # either one ending is fatal for the instrument: surface why
        finally:
            for task in tasks:
                task.cancel()

    async def _apply_forever(self) -> None:
        since_snapshot = 0
        tail = StreamTail(self.js, orders_subject(self.spec.symbol), stream=ORDERS_STREAM,
                          check_every_s=CONSUMER_CHECK_S,
                          label=f"journal {self.spec.symbol}")
        async with contextlib.aclosing(tail.messages(lambda: self.engine.applied_seq + 1)) as journal:
            async for msg in journal:
                seq = msg.metadata.sequence.stream
                if seq <= self.engine.applied_seq:
                    continue
                self._apply(seq, msg.data, msg.headers)
                if seq >= self.journal_end and not self.current.is_set():
                    self.current.set()
                    log.info("journal replayed", extra=kv(instrument=self.spec.symbol, seq=seq))
                since_snapshot += 1
                if len(self._pending) >= 1000:
                    self._wake.set()
                if tail.buffered == 0:  # an idle gap: do the deferred work now, not mid-burst
                    self._wake.set()  # publish what this run of entries reported, in one batch
                    self.engine.book.compact()
                    if since_snapshot >= self.snapshot_every and not self._snapshot_running():
                        await self._start_snapshot()
                        since_snapshot = 0

    def _apply(self, seq: int, data: bytes, headers: dict[str, str] | None) -> None:
        # the entry's execution reports carry the trace of the journal message that caused them; a
        # replay (engine not current yet) makes no span again, its entries had theirs when first applied
        if self.current.is_set():
            with handling(_TRACER, "orders.apply", headers, SpanKind.CONSUMER):
                reports = self.engine.apply_entry(seq, msgpack.unpackb(data, raw=False))
                carried = inject()
        else:
            reports = self.engine.apply_entry(seq, msgpack.unpackb(data, raw=False))
            carried = trace_headers(headers)
        if seq > self.exec_published_upto and reports:
            symbol, subject, most = self.spec.symbol, exec_subject(self.spec.symbol), EXEC_REPORTS_MAX
            self._pending.extend((seq, exec_msg_id(symbol, seq, n), subject, msgpack.packb(reports[start:start + most]),
                                  carried) for n, start in enumerate(range(0, len(reports), most)))
        if self._waiters:
            future = self._waiters.pop(seq, None)
            if future is not None and not future.done():
                future.set_result(None)

    async def _publish_forever(self) -> None:
        """Publish what the engine reported, in batches, without holding up the engine."""
        delays = PUBLISH_RETRY.delays()
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.flush()
                delays = PUBLISH_RETRY.delays()
            except LeaseLost:
                raise
            except Exception as exc:  # NATS away or slow: keep the reports and try again
                delay = next(delays)
                log.warning("exec publish failed, retrying", extra=kv(instrument=self.spec.symbol,
                                                                      error=repr(exc), delay_s=delay))
                await asyncio.sleep(delay)
                self._wake.set()

    async def flush(self) -> None:
        """Publish pending execution reports (fenced, deduplicated by msg-id), then the L2 deltas.

        The lease is checked before every batch, not once: a process paused while a batch's acks were on
        their way wakes up inside this loop, after the new owner may have published its first report."""
        self._check_held()
        async with self._flushing:
            while self._pending:
                self._check_held()
                batch, self._pending = self._pending[:EXEC_BATCH], self._pending[EXEC_BATCH:]
                token = str(self.lease.token)
                try:
                    await self.publisher.publish_atomic([
                        (subject, body, {"Nats-Msg-Id": msg_id, FENCE_HEADER: token, **carried})
                        for _seq, msg_id, subject, body, carried in batch])
                except BaseException:
                    self._pending[:0] = batch  # republished with the same msg-ids: the stream dedups
                    raise
                self.exec_published_upto = max(self.exec_published_upto, batch[-1][0])
            # nothing is pending and nothing ran since the check: every applied entry's reports
            # (some entries have none) are in EXEC
            self.exec_published_upto = max(self.exec_published_upto, self.engine.applied_seq)
            deltas = self.engine.book.drain_deltas()
            if deltas:
                self._check_held()
                prev, self.feed_seq = self.feed_seq, self.engine.applied_seq
                await self.nc.publish(book_feed_subject(self.spec.symbol), msgpack.packb({
                    "instrument": self.spec.symbol, "seq": self.feed_seq, "prev_seq": prev,
                    "checksum": self.engine.book.checksum(), "deltas": deltas,
                }))

    def _check_held(self) -> None:
        if not self.lease.held():
            raise LeaseLost(self.lease.key)

    def _snapshot_running(self) -> bool:
        return self._snapshotting is not None and not self._snapshotting.done()

    async def _consistent(self) -> bool:
        """Whether there is a state to snapshot (something applied since the last one); when there is, every
        report before it is in EXEC on return (a snapshot past unpublished reports would skip them on replay)."""
        if self.engine.applied_seq == self.last_snapshot_seq:
            return False
        if self._pending:
            await self.flush()
        return True

    async def _start_snapshot(self) -> None:
        """Take the state now and pack and write it in the background: a forked child packs it (packing here
        stopped the engine in proportion to its history) and the store put of a big book is many fsynced
        chunks, and the engine must not stop applying (and answering) meanwhile."""
        if not await self._consistent():
            return
        # no await between the consistent state and the fork: the child packs exactly `seq`
        seq, packed = self.engine.applied_seq, pack_in_child(self.engine.snapshot)
        self._snapshotting = asyncio.create_task(self._put_packed(packed, seq), name=f"snapshot-{self.spec.symbol}")
        self._snapshotting.add_done_callback(self._snapshot_done)

    def _snapshot_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:  # the next interval tries again
            log.warning("snapshot failed", extra=kv(instrument=self.spec.symbol, error=repr(task.exception())))

    async def _put_packed(self, packed: Awaitable[bytes], seq: int) -> None:
        await self._write_snapshot(await packed, seq)

    async def _write_snapshot(self, blob: bytes, seq: int) -> None:
        if not self.lease.held():  # fenced out: the new owner's snapshot may be newer than ours
            return
        obs = await self.js.object_store(SNAPSHOTS_OBJECTS)
        await obs.put(f"matching.{self.spec.symbol}", blob)
        self.last_snapshot_seq = max(self.last_snapshot_seq, seq)
        log.info("snapshot saved", extra=kv(instrument=self.spec.symbol, seq=seq, bytes=len(blob)))

    async def save_snapshot(self) -> None:
        """Write the engine's state to the shared snapshot store now (after any in flight), e.g. on shutdown."""
        if self._snapshotting is not None:
            await asyncio.wait({self._snapshotting})
        if await self._consistent():  # stopping: nothing else to do, so packed here
            await self._write_snapshot(msgpack.packb(self.engine.snapshot()), self.engine.applied_seq)


class MatchingNode:
    """Every instrument's runner, and the endpoints that journal commands to them."""

    def __init__(self, js: JetStreamContext, runners: dict[str, InstrumentRunner], owner: str) -> None:
        self.js = js
        self.runners = runners
        self.owner = owner

    def register(self, service: NodeService) -> None:
        """Bind each owned instrument's endpoints on `matching.<instrument>.<endpoint>`, and `status`
        on `matching.status`, which every engine answers with its own instruments."""
        handlers: dict[MatchingEndpoint, tuple[type[BaseModel], Handler]] = {
            MatchingEndpoint.SUBMIT: (SubmitOrder, self.submit), MatchingEndpoint.CANCEL: (CancelOrder, self.cancel),
            MatchingEndpoint.REPLACE: (ReplaceOrder, self.replace), MatchingEndpoint.ORDER: (OrderQuery, self.order),
            MatchingEndpoint.BOOK: (BookQuery, self.book), MatchingEndpoint.STATUS: (StatusQuery, self.status),
        }
        for symbol in self.runners:
            for endpoint in MATCHING_INSTRUMENT_ENDPOINTS:
                model, handler = handlers[endpoint]
                service.route(f"{symbol}-{endpoint}", model, subject=matching_subject(symbol, endpoint))(
                    _for_instrument(symbol, handler))
        service.route(MatchingEndpoint.STATUS, StatusQuery, every_instance=True)(self.status)

    async def submit(self, command: SubmitOrder) -> OrderResultView:
        """Journal a new order; reply with its state and immediate fills once applied."""
        # the validated fields as they are (str enums pack as strings): a model_dump per order cost ~10 µs
        entry = {"op": NEW, **vars(command)}
        return await self._journal(command.instrument, entry)

    async def cancel(self, command: CancelOrder) -> OrderResultView:
        """Journal a cancel; cancelling a filled or cancelled order answers its final state."""
        instrument(command.instrument)
        entry = {"op": CANCEL, "order_id": command.order_id, "account": command.account}
        return await self._journal(command.instrument, entry)

    async def replace(self, command: ReplaceOrder) -> OrderResultView:
        """Journal a cancel-replace."""
        entry = {"op": REPLACE, "order_id": command.order_id, "account": command.account,
                 "price": command.price, "qty": command.qty}
        return await self._journal(command.instrument, entry)

    async def order(self, query: OrderQuery) -> OrderResultView:
        """An order's current state with every fill so far."""
        runner = self._runner(query.instrument)
        record = runner.engine.orders.get(query.order_id)
        if record is None:
            raise QtError(ErrorCode.UNKNOWN_ORDER, f"no order {query.order_id!r}", {"order_id": query.order_id})
        return OrderResultView(record.as_result(query.instrument, runner.engine.applied_seq))

    async def book(self, query: BookQuery) -> BookView:
        """L2 depth with the journal sequence it reflects and its checksum."""
        engine = self._runner(query.instrument).engine
        bids, asks = engine.book.depth(query.depth)
        return BookView(instrument=query.instrument, seq=engine.applied_seq, checksum=engine.book.checksum(),
                        bids=bids, asks=asks)

    async def status(self, query: StatusQuery) -> StatusReply:
        """Owner, lease token, applied sequence, resting orders and last snapshot per instrument."""
        runners = [self._runner(query.instrument)] if query.instrument else list(self.runners.values())
        return StatusReply(book=BOOK_BUILD.kind, instruments=[
            InstrumentStatus(instrument=r.spec.symbol, owner=self.owner, lease_token=r.lease.token,
                             applied_seq=r.engine.applied_seq, exec_published_seq=r.exec_published_upto,
                             resting_orders=len(r.engine.book),
                             last_snapshot_seq=r.last_snapshot_seq, applied_commands=len(r.engine.results))
            for r in runners
        ])

    async def _journal(self, symbol: str, entry: dict[str, Any]) -> OrderResultView:
        runner = self._runner(symbol)
        result = await runner.execute(command_key(entry), entry)
        if result["status"] == "rejected":  # only this command: the others of its batch stand
            reason = result["reason"] or "rejected"
            raise QtError(_REJECT_CODES.get(reason, ErrorCode.VALIDATION),
                          f"order {entry['order_id']} rejected: {reason}",
                          {"order_id": entry["order_id"], "reason": reason})
        return OrderResultView(result)

    def _runner(self, symbol: str) -> InstrumentRunner:
        instrument(symbol)
        runner = self.runners.get(symbol)
        if runner is None:
            raise QtError(ErrorCode.UNAVAILABLE, f"{symbol} is not served by this engine")
        if not runner.lease.held():  # paused past its lease: another engine may own it by now
            raise QtError(ErrorCode.UNAVAILABLE, f"{symbol}: this engine's lease lapsed; retry")
        return runner


def _for_instrument(symbol: str, handler: Handler) -> Handler:
    """`handler` on one instrument's subject: a body naming another instrument is refused, and a status
    query naming none is about this one."""
    async def serve(command: Any) -> Any:
        named = command.instrument
        if named is None:
            command = StatusQuery(instrument=symbol)
        elif named != symbol:
            raise QtError(ErrorCode.VALIDATION, f"instrument {named!r} sent to {symbol}'s subject",
                          {"instrument": named, "subject_instrument": symbol})
        return await handler(command)

    return serve


def owned_instruments(setting: str | None) -> tuple[str, ...]:
    """The instruments `QT_MATCHING_INSTRUMENTS` (a comma list) gives this engine; unset, every listed one."""
    if setting is None or not setting.strip():
        return tuple(INSTRUMENTS)
    symbols = tuple(dict.fromkeys(s.strip() for s in setting.split(",") if s.strip()))
    if not symbols:
        raise QtError(ErrorCode.VALIDATION, f"QT_MATCHING_INSTRUMENTS names no instrument: {setting!r}")
    for symbol in symbols:
        instrument(symbol)  # an unlisted symbol is a configuration error: refuse to start
    return symbols


async def _all_current(runners: Iterable[InstrumentRunner]) -> None:
    for runner in runners:
        await runner.current.wait()


async def _wind_down(engines: set[asyncio.Task[None]], keepers: set[asyncio.Task[None]],
                     runners: dict[str, InstrumentRunner], leases: dict[str, Lease], lost: bool) -> None:
    """Stop the engines; unless fenced out, publish what they reported, snapshot and release the leases."""
    for task in engines:
        task.cancel()
    if not lost:  # a fenced-out owner must not write: its snapshot could be older than the new owner's
        # the leases keep renewing meanwhile: a big book's snapshot can outlast a renewal interval
        for runner in runners.values():
            await runner.flush()
            await runner.save_snapshot()
    for task in keepers:
        task.cancel()
    if not lost:
        for lease in leases.values():
            await lease.release()


async def serve(config: NodeConfig, stop: asyncio.Event) -> None:
    """Own the lease of each instrument this engine is given (standing by until then), replay them all,
    and only then subscribe their endpoints; serve until `stop`."""
    nc = await connect(config, name=f"{MATCHING_SERVICE}-{os.getpid()}")
    js = nc.jetstream()
    await ensure_named(js, streams=(ORDERS_STREAM, EXEC_STREAM), buckets=(LEASES_BUCKET,))
    await ensure_snapshot_store(js)
    leases_kv = await js.key_value(LEASES_BUCKET)
    owned = owned_instruments(os.environ.get("QT_MATCHING_INSTRUMENTS"))
    leases = {symbol: Lease(leases_kv, f"matching.{symbol}", config.data_dir) for symbol in owned}
    try:
        for lease in leases.values():
            await lease.acquire(stop)
    except asyncio.CancelledError:
        for lease in leases.values():
            if lease.token:
                await lease.release()
        await nc.close()
        return
    snapshot_every = env_int("QT_MATCHING_SNAPSHOT_EVERY", 10_000)
    runners = {s: InstrumentRunner(js, nc, INSTRUMENTS[s], leases[s], snapshot_every) for s in owned}
    for runner in runners.values():
        await runner.load()
    settle_heap()  # the books make no reference cycles: what was loaded is long-lived
    node = MatchingNode(js, runners, owner=f"{os.uname().nodename}:{os.getpid()}")
    service = NodeService(nc, name=MATCHING_SERVICE, version=VERSION, metrics=NodeMetrics(MATCHING_SERVICE),
                          description="price-time matching: journal to ORDERS, results to EXEC")
    node.register(service)
    engines = {asyncio.create_task(r.run(), name=f"engine-{s}") for s, r in runners.items()}
    keepers = {asyncio.create_task(lease.keep(), name=f"lease-{s}") for s, lease in leases.items()}
    tasks = engines | keepers
    # Register (PING, `book`, `order`, submit) only once every book is current: a node answering
    # mid-replay would show a partial book and `unknown_order` for orders it has not replayed yet.
    replayed = asyncio.create_task(_all_current(runners.values()))
    await until_stopped(stop, tasks | {replayed})
    if replayed.done() and not stop.is_set():
        await service.start()
        log.info("matching serving", extra=kv(instruments=",".join(runners), tokens=",".join(
            str(lease.token) for lease in leases.values()), book=BOOK_BUILD.kind, book_build=BOOK_BUILD.reason))
    replayed.cancel()
    failures = await until_stopped(stop, tasks)
    lost = any(isinstance(exc, LeaseLost) for _, exc in failures)
    for name, exc in failures:
        log.error("matching stopping", extra=kv(task=name, reason=repr(exc)))
    await service.stop()
    await _wind_down(engines, keepers, runners, leases, lost)
    if lost:  # fenced out: leave at once, nothing of ours is worth flushing any more
        await nc.close()
        raise LeaseLost("matching")
    await disconnect(nc)
