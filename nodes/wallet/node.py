"""The `wallet` micro service: endpoints first, then the state they touch, then start/stop."""

from __future__ import annotations

import asyncio
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from contracts.errors import ErrorCode, QtError
from contracts.subjects import (
    LEASES_BUCKET,
    WALLET_PARTITION_ENV,
    WALLET_PARTITIONS_ENV,
    WALLET_PARTITIONS_METADATA,
    WALLET_SERVICE,
    WALLET_STREAM,
    WalletEndpoint,
    wallet_group,
    wallet_partition,
)
from contracts.wallet import (
    BalanceQuery,
    BalanceReply,
    BalanceState,
    Credit,
    Debit,
    Deposit,
    EventsQuery,
    EventsReply,
    Hold,
    RebuildCommand,
    RebuildReply,
    Release,
    Settle,
    VerifyCommand,
    VerifyReply,
    WalletBatch,
    Withdraw,
)
from mesh.jetstream import ensure_named
from mesh.rpc import REPLAYED_HEADER
from nodes.runtime.config import NodeConfig, env_int
from nodes.runtime.connect import connect
from nodes.runtime.lease import Lease, LeaseLost
from nodes.runtime.lifecycle import disconnect, until_stopped
from nodes.runtime.log import kv
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.service import NodeService, Reply
from nodes.runtime.tracing import inject
from nodes.wallet.checkpointer import Checkpointer
from nodes.wallet.relay import OutboxRelay
from nodes.wallet.replay import rebuild, verify
from nodes.wallet.schema import PartitionCountMismatch, open_db, record_partitions
from nodes.wallet.store import Command, EventStore, Outcome, event_from_row
from nodes.wallet.writer import Writer

log = logging.getLogger(__name__)
VERSION = "0.1.0"


class WalletNode:
    """One wallet partition: a writer, a reader, an outbox relay and the micro endpoints."""

    def __init__(self, config: NodeConfig, *, partition: int = 0, partitions: int = 1) -> None:
        self.config = config
        self.partition = partition
        self.partitions = partitions
        self.db_path = db_path(config.data_dir, partition)
        synchronous = os.environ.get("QT_WALLET_SYNC", "FULL").upper()
        self.store = EventStore(
            self.db_path,
            partition=partition,
            snapshot_every=env_int("QT_SNAPSHOT_EVERY", 500),
            synchronous=synchronous,
        )
        self.writer = Writer(self.store)
        self.checkpointer = Checkpointer(self.db_path, synchronous=synchronous)
        self._read_db = open_db(self.db_path, synchronous="NORMAL", readonly=True)
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="wallet-reader")

    # --- endpoints ---------------------------------------------------------------------------------

    def register(self, service: NodeService) -> None:
        """Bind every wallet endpoint to the service."""
        for name, model in (
            (WalletEndpoint.DEPOSIT, Deposit), (WalletEndpoint.WITHDRAW, Withdraw), (WalletEndpoint.CREDIT, Credit),
            (WalletEndpoint.HOLD, Hold), (WalletEndpoint.RELEASE, Release), (WalletEndpoint.DEBIT, Debit),
            (WalletEndpoint.SETTLE, Settle),
        ):
            service.route(name, model)(self.mutate)
        service.route(WalletEndpoint.BATCH, WalletBatch)(self.batch)
        service.route(WalletEndpoint.BALANCE, BalanceQuery)(self.balance)
        service.route(WalletEndpoint.EVENTS, EventsQuery)(self.events)
        service.route(WalletEndpoint.REBUILD, RebuildCommand)(self.rebuild)
        service.route(WalletEndpoint.VERIFY, VerifyCommand)(self.verify)

    async def mutate(self, command: Command) -> Reply:
        """Every money-moving command: durable (and recorded by op_id) before the reply."""
        self._check_owned(*accounts_of(command))
        traceparent = inject().get("traceparent")
        outcome = await self.writer.submit(command, traceparent)
        headers = {REPLAYED_HEADER: "true"} if outcome.replayed else {}
        if outcome.error is not None:
            raise outcome.error
        assert outcome.reply is not None
        return Reply(outcome.reply, headers)

    async def batch(self, request: WalletBatch) -> BatchView:
        """Many hold/release/settle commands in one message and one group commit; a result per command,
        all durable before the reply (for callers such as clearing that have several commands waiting)."""
        traceparent = inject().get("traceparent")
        commands: list[Command] = [item.command for item in request.commands]
        refusals = [self._refusal(*accounts_of(command)) for command in commands]
        if not any(refusals):
            return BatchView(await self.writer.submit_many(commands, traceparent))
        # an item for another partition is refused alone, unapplied, like any refused command
        applied = iter(await self.writer.submit_many(
            [command for command, refusal in zip(commands, refusals, strict=True) if refusal is None], traceparent))
        return BatchView([Outcome(None, refusal) if refusal is not None else next(applied) for refusal in refusals])

    async def balance(self, query: BalanceQuery) -> BalanceReply:
        """Every asset of the account, read from the committed projection."""
        self._check_owned(query.account)
        rows = await self._read(
            "SELECT asset, available, held, version FROM balances WHERE account=? ORDER BY asset",
            (query.account,),
        )
        return BalanceReply(
            account=query.account,
            balances={
                asset: BalanceState(account=query.account, asset=asset, available=a, held=h, version=v)
                for asset, a, h, v in rows
            },
        )

    async def events(self, query: EventsQuery) -> EventsReply:
        """A page of the account's events: after the `after` cursor oldest first, or below the `before`
        cursor newest first."""
        self._check_owned(query.account)
        newest = query.newest_first
        where = "seq < ?" if newest and query.before is not None else "seq > ?"
        sql = (
            "SELECT seq, account, asset, version, type, amount, hold_id, op_id, ts_ns, prev_hash, hash "
            f"FROM events WHERE account=? AND {where}" + (" AND asset=?" if query.asset else "")
            + (" ORDER BY seq DESC LIMIT ?" if newest else " ORDER BY seq LIMIT ?")
        )
        cursor = (query.before if query.before is not None else 0) if newest else query.after
        params: tuple[Any, ...] = (query.account, cursor)
        params += ((query.asset,) if query.asset else ()) + (query.limit + 1,)
        rows = await self._read(sql, params)
        events = [event_from_row(self.store.ledger_id, row) for row in rows[: query.limit]]
        last = events[-1].seq if len(rows) > query.limit else None
        return EventsReply(events=events, next_after=None if newest else last, next_before=last if newest else None)

    async def rebuild(self, command: RebuildCommand) -> RebuildReply:
        """Replay from snapshots aside from the loop while no command interleaves, repairing drift."""
        self._check_owned(*([command.account] if command.account else []))
        def run() -> RebuildReply:
            result = rebuild(self.store.db, command.account)
            self.store.invalidate()
            return result

        return await self.writer.call_aside(run)

    async def verify(self, command: VerifyCommand) -> VerifyReply:
        """Check the whole chain and every snapshot from genesis, on a read snapshot."""
        self._check_owned(*([command.account] if command.account else []))
        def run() -> VerifyReply:
            self._read_db.execute("BEGIN")
            try:
                return verify(self._read_db, command.account, ledger=self.store.ledger_id)
            finally:
                self._read_db.execute("COMMIT")

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    # --- partition ownership -----------------------------------------------------------------------

    def _refusal(self, *accounts: str) -> QtError | None:
        """`wrong_partition` when an account hashes to another partition: serving it here would split
        that account's money across two ledgers."""
        foreign = sorted({a for a in accounts if wallet_partition(a, self.partitions) != self.partition})
        if not foreign:
            return None
        return QtError(ErrorCode.WRONG_PARTITION,
                       f"account {foreign[0]!r} belongs to wallet partition "
                       f"{wallet_partition(foreign[0], self.partitions)}, not {self.partition}",
                       {"partition": self.partition, "partitions": self.partitions,
                        "accounts": {a: wallet_partition(a, self.partitions) for a in foreign}})

    def _check_owned(self, *accounts: str) -> None:
        refusal = self._refusal(*accounts)
        if refusal is not None:
            raise refusal

    # --- reads -------------------------------------------------------------------------------------

    async def _read(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        def run() -> list[tuple[Any, ...]]:
            return self._read_db.execute(sql, params).fetchall()

        return await asyncio.get_running_loop().run_in_executor(self._reader, run)

    def close(self) -> None:
        """Release threads and connections (the writer's last, so its close checkpoints what is left)."""
        self.writer.shutdown()
        self.checkpointer.stop()
        self._reader.shutdown(wait=True)
        self._read_db.close()
        self.store.close()


async def serve(config: NodeConfig, stop: asyncio.Event) -> None:
    """Own the partition lease, serve until `stop`, then drain in order and close."""
    partitions = env_int(WALLET_PARTITIONS_ENV, 1)
    partition = env_int(WALLET_PARTITION_ENV, 0, minimum=0)
    try:
        if partition >= partitions:
            raise PartitionCountMismatch(f"{WALLET_PARTITION_ENV}={partition} but only {partitions} partitions")
        record_partitions(db_path(config.data_dir, partition), partitions)
    except PartitionCountMismatch as mismatch:
        log.error("wallet refuses to start: partition count mismatch",
                  extra=kv(partition=partition, partitions=partitions, reason=str(mismatch)))
        raise SystemExit(2) from mismatch
    nc = await connect(config, name=f"{WALLET_SERVICE}-p{partition}-{os.getpid()}")
    js = nc.jetstream()
    await ensure_named(js, streams=(WALLET_STREAM,), buckets=(LEASES_BUCKET,))
    lease = Lease(await js.key_value(LEASES_BUCKET), wallet_group(partition), config.data_dir)
    try:
        await lease.acquire(stop)
    except asyncio.CancelledError:
        await nc.close()
        return
    node = WalletNode(config, partition=partition, partitions=partitions)
    node.checkpointer.start()
    metrics = NodeMetrics(WALLET_SERVICE)
    service = NodeService(nc, name=WALLET_SERVICE, version=VERSION, metrics=metrics, group=wallet_group(partition),
                          metadata={"partition": str(partition), WALLET_PARTITIONS_METADATA: str(partitions)},
                          description="event-sourced balances: holds, settlement, rebuild, verify")
    node.register(service)
    relay_stop = asyncio.Event()
    writer_task = asyncio.create_task(node.writer.run(), name="writer")
    relay_task = asyncio.create_task(OutboxRelay(nc, node.writer).run(relay_stop), name="relay")
    lease_task = asyncio.create_task(lease.keep(), name="lease")
    await service.start()
    log.info("wallet serving", extra=kv(db=str(node.db_path), ledger=node.store.ledger_id,
                                        partition=partition, partitions=partitions,
                                        lease_token=lease.token))
    lost = False
    for _, exc in await until_stopped(stop, (lease_task, writer_task)):
        lost = lost or isinstance(exc, LeaseLost)
        level = log.error if not isinstance(exc, LeaseLost) else log.warning
        level("wallet stopping", extra=kv(reason=repr(exc)))
    await service.stop()
    await node.writer.close()
    await writer_task
    relay_stop.set()
    node.writer.committed.set()  # wake the relay so it flushes what is left and sees the stop
    await asyncio.wait({relay_task}, timeout=10)
    lease_task.cancel()
    await lease.release()
    await disconnect(nc)
    node.close()
    if lost:  # after the wind-down: what was committed is relayed, then the exit code says why
        raise LeaseLost(lease.key)


def accounts_of(command: Command) -> list[str]:
    """Every account a command touches (a settlement's legs may name several)."""
    if isinstance(command, Settle):
        return [leg.account for leg in command.legs]
    return [command.account]


def db_path(data_dir: Path, partition: int = 0) -> Path:
    """Where partition `partition` keeps its SQLite file."""
    return data_dir / "wallet" / f"p{partition}.sqlite"


@dataclass(frozen=True, slots=True)
class BatchView:
    """A `WalletBatchReply` rendered from the writer's outcomes without building a model per result."""

    outcomes: list[Outcome]

    def to_wire(self, wire: str) -> dict[str, Any]:
        """`{"results": [{"ok": MutationReply, "replayed"} | {"error": {code, message, detail}}]}`."""
        results: list[dict[str, Any]] = []
        for outcome in self.outcomes:
            if outcome.error is not None:
                results.append({"error": outcome.error.to_body(), "replayed": outcome.replayed})
            else:
                assert outcome.reply is not None
                results.append({"ok": outcome.reply.to_wire(wire), "replayed": outcome.replayed})
        return {"results": results}
