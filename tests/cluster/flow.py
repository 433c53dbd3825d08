"""A random order flow that keeps going through faults, and the checks that must hold afterwards.

Each order has a saga id of its own, so a request that timed out (its reply lost with a server or a
clearing instance) is retried with the same id until the saga answers final: an answer is what the
venue acknowledged. Recovery time is measured from a kill to the moment every worker is acknowledged
again with an order it sent after the kill.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from nats.aio.client import Client
from nats.errors import Error as NatsError

from contracts.clearing import FINAL_STATUSES
from contracts.errors import ErrorCode, QtError
from contracts.subjects import matching_subject
from mesh.rpc import call
from tests.clearing.platform import FEES, Platform, balances, clearing, fund, place, verify_all, wait_final
from tests.clearing.test_conservation import holds_match, random_order
from tests.matching.journal_replay import replay_journal
from tests.procs import NodeProcess

TRANSIENT = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT})
DEPOSITS = {"USD": 50_000_000, "AAPL": 2_000_000, "BTC": 200_000_000}  # 500k USD, 200 AAPL, 2 BTC
#: How long one attempt waits; a retry with the same saga id joins the running saga.
ATTEMPT_TIMEOUT_S = 3.0


@dataclass
class Recovery:
    """What a kill cost: when it happened, the first order sent after it that was acknowledged, and when
    every worker had one (seconds after the kill)."""

    component: str
    killed_at: float
    first_ack_s: float | None = None
    all_workers_s: float | None = None


@dataclass
class OrderFlow:
    """Workers placing random orders from `accounts` until stopped; every final answer is recorded."""

    nc: Client
    accounts: list[str]
    seed: int
    workers: int = 6
    partitions: int = 1
    """Wallet partitions of the platform (deposits and balance reads go to each account's own)."""
    acked: dict[str, dict[str, Any]] = field(default_factory=dict)
    """saga id -> the final saga the venue answered."""
    placed: list[tuple[str, str, str]] = field(default_factory=list)
    """(instrument, saga id, account) of every order sent, answered or not."""
    outcomes: Counter[str] = field(default_factory=Counter)
    retries: int = 0
    ack_times: dict[int, list[tuple[float, float]]] = field(default_factory=lambda: defaultdict(list))
    """worker -> (sent, acknowledged) monotonic times of each of its orders."""
    current: dict[int, tuple[str, str]] = field(default_factory=dict)
    """worker -> (saga id, last answer) of the order it is waiting for (what a stall names)."""
    _stop: asyncio.Event = field(default_factory=asyncio.Event)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)

    async def fund(self) -> None:
        """Deposit the same amounts into every account."""
        for account in self.accounts:
            await fund(self.nc, account, self.partitions, **DEPOSITS)

    def start(self) -> None:
        """Run the workers in the background."""
        rng = random.Random(self.seed)
        self._tasks = [asyncio.create_task(self._work(n, random.Random(rng.random()))) for n in range(self.workers)]

    async def stop(self) -> None:
        """Stop sending new orders; every order sent is driven to its final answer first."""
        self._stop.set()
        await asyncio.gather(*self._tasks)

    @property
    def acks(self) -> int:
        """Orders answered final so far."""
        return len(self.acked)

    async def wait_acks(self, count: int, timeout_s: float = 90.0) -> None:
        """Until `count` more orders were answered (the flow is moving), or fail."""
        target = self.acks + count
        deadline = time.monotonic() + timeout_s
        while self.acks < target:
            assert time.monotonic() < deadline, f"flow stalled at {self.acks} acks: {dict(self.outcomes)}"
            assert not any(t.done() for t in self._tasks), [t.exception() for t in self._tasks if t.done()]
            await asyncio.sleep(0.05)

    async def recovered(self, recovery: Recovery, timeout_s: float = 90.0) -> Recovery:
        """Wait until every worker had an order sent after the kill acknowledged; fills in the recovery times."""
        deadline = time.monotonic() + timeout_s
        while True:
            after = [next((acked for sent, acked in times if sent > recovery.killed_at), None) for times in
                     (self.ack_times[n] for n in range(self.workers))]
            firsts = [t for t in after if t is not None]
            if firsts and recovery.first_ack_s is None:
                recovery.first_ack_s = min(firsts) - recovery.killed_at
            if len(firsts) == self.workers:
                recovery.all_workers_s = max(firsts) - recovery.killed_at
                return recovery
            stalled = {n: self.current.get(n) for n, t in enumerate(after) if t is None}
            assert not any(t.done() for t in self._tasks), [t.exception() for t in self._tasks if t.done()]
            assert time.monotonic() < deadline, f"{recovery.component}: not recovered: {stalled} {dict(self.outcomes)}"
            await asyncio.sleep(0.05)

    async def _work(self, worker: int, rng: random.Random) -> None:
        while not self._stop.is_set():
            account = rng.choice(self.accounts)
            if rng.random() < 0.1 and self.placed:  # cancel an earlier order of this account (maybe filled)
                await self._cancel(rng.choice(self.placed))
            body = random_order(rng, account)
            saga_id = f"flow-{uuid.uuid4().hex[:20]}"
            self.placed.append((body["instrument"], saga_id, account))
            sent = time.monotonic()
            outcome = await self._until_final(worker, saga_id, body)
            self.outcomes[outcome] += 1
            self.ack_times[worker].append((sent, time.monotonic()))

    async def _until_final(self, worker: int, saga_id: str, body: dict[str, Any]) -> str:
        """Send (and resend, same saga id) until the saga's answer is final; returns the outcome."""
        while True:
            self.current[worker] = (saga_id, "sent")
            try:
                reply = await place(self.nc, timeout=ATTEMPT_TIMEOUT_S, saga_id=saga_id, **body)
            except NatsError as exc:  # our own connection moving to another server: the request may be lost
                self.current[worker] = (saga_id, repr(exc))
                self.retries += 1
                await asyncio.sleep(0.1)
                continue
            except QtError as exc:
                self.current[worker] = (saga_id, f"{exc.code}: {exc.message}")
                if exc.code in TRANSIENT:
                    self.retries += 1
                    await asyncio.sleep(0.1)
                    continue
                self.acked[saga_id] = {"status": "refused", "code": str(exc.code)}
                return str(exc.code)
            if reply["status"] in FINAL_STATUSES:
                self.acked[saga_id] = reply
                return str(reply["status"])
            self.current[worker] = (saga_id, str(reply["status"]))
            self.retries += 1  # a retry found the saga still running (recovering): ask again

    async def _cancel(self, order: tuple[str, str, str]) -> None:
        symbol, order_id, account = order
        with contextlib.suppress(QtError, NatsError):
            await clearing(self.nc, "cancel_order", timeout=ATTEMPT_TIMEOUT_S, account=account,
                           order_id=order_id, instrument=symbol)


async def check_invariants(platform: Platform, flow: OrderFlow, context: str) -> None:
    """Nothing acknowledged lost, every asset conserved with fees, no hold without an open order,
    every saga final, every wallet partition's chain verified, the books equal a fresh replay of the journal."""
    nc = platform.nc
    for saga_id, answer in flow.acked.items():  # every acknowledged answer is still what the venue says
        if answer["status"] == "refused":
            continue
        saga = await clearing(nc, "saga_get", saga_id=saga_id)
        assert saga["status"] == answer["status"], f"{saga_id}: acked {answer['status']}, now {saga['status']}"
        assert {f["trade_id"] for f in answer["fills"]} <= {f["trade_id"] for f in saga["fills"]}, saga_id
    totals: dict[str, int] = defaultdict(int)
    for account in [*flow.accounts, FEES]:
        for asset, (available, held) in (await balances(nc, account, platform.partitions)).items():
            totals[asset] += available + held
    expected = {asset: amount * len(flow.accounts) for asset, amount in DEPOSITS.items()}
    assert dict(totals) == expected, context
    await holds_match(platform, flow.placed, context, timeout_s=60)  # fails naming the last difference
    for saga_id in {saga_id for _, saga_id, _ in flow.placed}:
        try:
            saga = await clearing(nc, "saga_get", saga_id=saga_id)
        except QtError:  # an order refused before its saga existed has none
            continue
        if saga["status"] not in FINAL_STATUSES:  # recovery drives a saga whose driver died
            saga = await wait_final(nc, saga_id, timeout_s=60)
        assert (saga.get("error") or {}).get("code") != "compensation_failed", f"{saga_id} {context}"
    verified = await verify_all(nc, platform.partitions)  # every partition's chain
    assert all(reply["ok"] for reply in verified), (verified, context)
    for symbol in sorted({symbol for symbol, _, _ in flow.placed}):
        expected, _ = await replay_journal(nc, symbol)
        book = await call(nc, matching_subject(symbol, "book"), {"instrument": symbol, "depth": 500}, timeout=10)
        assert (book["checksum"], book["seq"]) == (expected.book.checksum(), expected.applied_seq), \
            f"{symbol}: the live book differs from a fresh replay of its journal {context}"


async def wait_instances(nc: Client, service: str, count: int, timeout_s: float = 60.0) -> None:
    """Until `count` instances of a micro service answer one PING (each instance of a queue group
    answers discovery itself), or fail."""
    deadline = time.monotonic() + timeout_s
    while True:
        inbox = nc.new_inbox()
        sub = await nc.subscribe(inbox)
        await nc.publish(f"$SRV.PING.{service}", b"", reply=inbox)
        await asyncio.sleep(0.5)
        answered = sub.pending_msgs
        await sub.unsubscribe()
        if answered >= count:
            return
        assert time.monotonic() < deadline, f"{answered} of {count} {service} instances answer"


async def kill_node(platform: Platform, proc: NodeProcess, flow: OrderFlow, name: str,
                    instance: str = "") -> tuple[Recovery, NodeProcess]:
    """SIGKILL a node we started, start it again on its data dir; returns its recovery and the new process."""
    recovery = Recovery(name, time.monotonic())
    await asyncio.to_thread(proc.kill9)  # off the loop: replies that arrive meanwhile keep their times
    restarted = await platform.start(proc.module.removeprefix("nodes."), instance=instance, wait=False,
                                     **proc.extra_env)
    await flow.recovered(recovery)
    return recovery, restarted
