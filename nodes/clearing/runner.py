"""Drives a saga record through the pure state machine: persist, run the body, retry, compensate.

What is persisted, and when: the saga is created (CAS create) with reserve_funds started; it is
written again when it turns to compensating (the decision to unwind must survive a crash) and
when it is final (after the reply to place_order: see `drive`). The steps in between run without
a write of their own: each is idempotent by its op_id, so a saga recovered from its last record
re-runs them and gets the first answers back. `QT_SAGA_CHECKPOINT=each` also writes before every
step and compensation, for step-by-step visibility while a saga runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

from contracts.clearing import COMPENSATIONS, FINAL_STATUSES, STEPS, SagaRecord, SagaStatus, StepResult
from contracts.errors import ErrorCode, QtError
from mesh.backoff import Backoff
from nodes.clearing import saga as machine
from nodes.clearing.steps import Body, SagaSteps
from nodes.clearing.store import SagaConflict, SagaStore
from nodes.runtime.client import is_transient
from nodes.runtime.lease import process_gone
from nodes.runtime.log import kv
from nodes.runtime.metrics import LATENCY_BUCKETS, NodeMetrics

log = logging.getLogger(__name__)

#: Waits between attempts of a step whose dependency is down (half jitter: waiting sagas spread out).
STEP_RETRY = Backoff(jitter=0.5)



@dataclass
class _Written:
    """The revision this driver last wrote and when (monotonic s): the next write's CAS, and its lease."""

    revision: int
    at: float


def check_table(table: Mapping[str, Body]) -> dict[str, Body]:
    """The step table as given, once it names exactly the contract's steps and compensations."""
    wanted = {*STEPS, *COMPENSATIONS}
    if set(table) != wanted:
        missing, extra = sorted(wanted - set(table)), sorted(set(table) - wanted)
        raise ValueError(f"saga step table: missing {missing}, unknown {extra}")
    return dict(table)


def instance_id() -> str:
    """Who drives a saga: host and pid, so a restart on the same host can tell its dead self."""
    return f"{socket.gethostname()}:{os.getpid()}"


class SagaRunner:
    """Runs sagas to a final status; one task per saga, at most one driver per saga (CAS)."""

    def __init__(self, store: SagaStore, steps: SagaSteps, metrics: NodeMetrics, *, lease_s: float = 15.0,
                 checkpoint_each: bool = False, crash_at: str | None = None, final_delay_s: float = 0.0) -> None:
        self.store = store
        self.steps = steps
        self.bodies = check_table(steps.table())
        self.metrics = metrics
        self.owner = instance_id()
        self.lease_s = lease_s
        self.checkpoint_each = checkpoint_each
        self.crash_at = crash_at
        self.final_delay_s = final_delay_s
        """Test hook `QT_FINAL_WRITE_DELAY_S`: hold each final record back after the reply, widening the
        window in which only this instance's memory has it."""
        self.driving: set[str] = set()
        self.dropped: set[str] = set()
        """Sagas this instance stopped driving before their final write landed (JetStream did not answer):
        its recovery skips what it drives, so they are handed to it here and claimed once their lease lapses."""
        self.failed_creates: set[str] = set()
        """Sagas whose create failed here: the record may have landed all the same (an ack lost in a leader
        election, its index entry refused), and then no task drives it and no peer's loss would make
        recovery scan for it. Recovery adopts them as soon as the record is readable."""
        self._finishing: set[asyncio.Task[None]] = set()
        self.unwritten: dict[str, SagaRecord] = {}
        """Final sagas whose caller has its reply while the final record is still being written: this
        instance's reads answer from here, so a request sent on the reply sees what the reply said."""
        registry = metrics.registry
        self.step_seconds = Histogram("qt_saga_step_seconds", "Saga step and compensation time", ["step"],
                                      buckets=LATENCY_BUCKETS, registry=registry)
        self.saga_seconds = Histogram("qt_saga_seconds", "Saga time from creation to final", ["status"],
                                      buckets=LATENCY_BUCKETS, registry=registry)
        self.kv_writes = Counter("qt_saga_kv_writes", "Saga record writes", registry=registry)

    async def create(self, saga: SagaRecord) -> int | None:
        """Store a new saga with its first step started; None when the id exists already."""
        machine.start(saga, "reserve_funds", time.time_ns())
        self._lease(saga)
        try:
            revision = await self.store.create(saga)
        except BaseException:
            self.failed_creates.add(saga.saga_id)
            raise
        if revision is not None:
            self.kv_writes.inc()
        return revision

    async def claim(self, saga: SagaRecord, revision: int) -> int:
        """Take a saga over from a driver that is gone (CAS): the new revision, or `SagaConflict`."""
        self._lease(saga)
        revision = await self.store.update(saga, revision)
        self.kv_writes.inc()
        await self.store.index.add(saga)  # its first driver may have died between create and index
        return revision

    async def drive(self, saga: SagaRecord, revision: int, *, reply_first: bool = False) -> SagaRecord:
        """Run the saga until it is final; `SagaConflict` if another instance took it over.

        With `reply_first` the final record is written after this returns: every effect is durable
        already (wallet, engine, TRADES), so a crash before that write only makes recovery re-run
        idempotent steps to the same outcome, and the caller does not wait for one more KV write.
        """
        if saga.saga_id in self.driving:
            raise SagaConflict(saga.saga_id)
        self.driving.add(saga.saga_id)
        try:
            state = await self._drive(saga, revision)
        except BaseException:
            self.driving.discard(saga.saga_id)
            self.dropped.add(saga.saga_id)
            raise
        if not reply_first:
            await self._finish(saga, state)
            return saga
        self.unwritten[saga.saga_id] = saga
        task = asyncio.create_task(self._finish(saga, state))
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)
        return saga

    async def flush(self) -> None:
        """Wait for final records still being written (on shutdown)."""
        if self._finishing:
            await asyncio.wait(set(self._finishing), timeout=10)

    async def _finish(self, saga: SagaRecord, state: _Written) -> None:
        try:
            if self.final_delay_s:
                await asyncio.sleep(self.final_delay_s)
            await self._persist(saga, state)
        except Exception as exc:  # recovery re-drives it from the last record to the same end
            log.warning("final saga write failed", extra=kv(saga=saga.saga_id, error=repr(exc)))
            self.dropped.add(saga.saga_id)
            return
        finally:
            self.driving.discard(saga.saga_id)
            self.unwritten.pop(saga.saga_id, None)
        self.saga_seconds.labels(str(saga.status)).observe((time.time_ns() - saga.created_ns) / 1e9)
        # a completed saga is the common case: a log line each would cost more than its metrics (debug)
        log.log(logging.DEBUG if saga.status is SagaStatus.COMPLETED else logging.INFO, "saga final",
                extra=kv(saga=saga.saga_id, status=saga.status, error=(saga.error or {}).get("code")))

    async def _drive(self, saga: SagaRecord, revision: int) -> _Written:
        state = _Written(revision, time.monotonic())
        fresh = saga.steps[0].attempts == 1 and saga.status is SagaStatus.IN_PROGRESS
        while True:
            action = machine.next_action(saga)
            if action.kind == "final":
                return state
            name = action.name
            if action.kind == "step":
                if not (fresh and name == "reserve_funds"):
                    machine.start(saga, name, time.time_ns())
                    if self.checkpoint_each:
                        await self._persist(saga, state)
                fresh = False
                if machine.injected_before(saga, name):
                    machine.fail(saga, name, machine.injected_error(name, after=False), time.time_ns())
                    await self._persist(saga, state)
                    continue
                try:
                    result = await self._run(self.bodies[name], saga, name, state)
                except QtError as exc:
                    machine.fail(saga, name, exc.to_body(), time.time_ns())
                    await self._persist(saga, state)
                    continue
                self._maybe_crash(name)
                machine.done(saga, name, result, time.time_ns())
                if machine.injected_after(saga, name):
                    machine.fail(saga, name, machine.injected_error(name, after=True), time.time_ns())
                    await self._persist(saga, state)
            else:
                machine.start(saga, name, time.time_ns())
                if self.checkpoint_each:
                    await self._persist(saga, state)
                try:
                    result = await self._run(self.bodies[name], saga, name, state)
                except QtError as exc:
                    machine.compensation_failed(saga, name, exc.to_body(), time.time_ns())
                    log.error("compensation failed", extra=kv(saga=saga.saga_id, step=name, error=exc.code))
                    continue
                self._maybe_crash(f"compensate:{name}")
                machine.done(saga, name, result, time.time_ns())

    async def _run(self, body: Body, saga: SagaRecord, name: str, state: _Written) -> StepResult:
        """Run a body until it answers; transient failures (dependency down) are retried forever,
        renewing the saga's lease so no other instance takes it over meanwhile. Anything else is a
        deterministic refusal, raised as a `QtError` at once: retrying it would stall the saga forever."""
        started = time.perf_counter()
        delays = STEP_RETRY.delays()
        while True:
            try:
                result = await body(saga)
                self.step_seconds.labels(name).observe(time.perf_counter() - started)
                return result
            except Exception as exc:
                if not is_transient(exc):
                    raise _refusal(exc, saga, name) from exc
                error = exc.code if isinstance(exc, QtError) else repr(exc)
                log.warning("saga step waiting", extra=kv(saga=saga.saga_id, step=name, error=error))
            await asyncio.sleep(next(delays))
            if time.monotonic() - state.at > self.lease_s / 3:
                await self._persist(saga, state)

    async def _persist(self, saga: SagaRecord, state: _Written) -> None:
        self._lease(saga)
        state.revision = await self.store.update(saga, state.revision)
        state.at = time.monotonic()
        self.kv_writes.inc()

    def _lease(self, saga: SagaRecord) -> None:
        saga.owner = self.owner
        saga.lease_until_ms = int(time.time() * 1000 + self.lease_s * 1000)

    def _maybe_crash(self, step: str) -> None:
        """Test hook `QT_CRASH_AT=<step>` (or `compensate:<name>`): die by SIGKILL right after that body
        ran and before the saga records it, the worst moment for a crash."""
        if self.crash_at == step:
            log.warning("QT_CRASH_AT: killing myself", extra=kv(step=step))
            os.kill(os.getpid(), signal.SIGKILL)


def _refusal(exc: Exception, saga: SagaRecord, step: str) -> QtError:
    """A step's deterministic failure as the error the saga records; a non-contract one is a bug: logged."""
    if isinstance(exc, QtError):
        return exc
    log.error("saga step crashed", exc_info=exc, extra=kv(saga=saga.saga_id, step=step))
    return QtError(ErrorCode.INTERNAL, f"{step}: {type(exc).__name__}: {exc}"[:200])


def claimable(saga: SagaRecord, owner: str, now_ms: int) -> bool:
    """Whether an instance not driving this saga may take it over: not final, and its driver's
    lease lapsed (even if that driver was this instance, whose task then died) or its driver was a
    process on this host that is gone."""
    if saga.status in FINAL_STATUSES:
        return False
    if saga.lease_until_ms < now_ms:
        return True
    if saga.owner == owner:
        return False
    host, _, pid = saga.owner.rpartition(":")
    return pid.isdigit() and process_gone(host, int(pid))

