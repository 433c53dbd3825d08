"""The place-order saga as a pure state machine: which step or compensation runs next, and how a
result or a failure moves the record. No I/O: the runner persists the record and does the calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from contracts.clearing import (
    COMPENSATIONS,
    FINAL_STATUSES,
    INJECTED,
    STEPS,
    PlaceOrder,
    SagaRecord,
    SagaStatus,
    StepRecord,
    StepResult,
    StepStatus,
)
from contracts.errors import BUSINESS_CODES, ErrorCode
from contracts.matching import Fill

#: Steps that are one call: refused means nothing happened.
ATOMIC_STEPS = frozenset({"reserve_funds", "submit_order"})
#: The error a saga ends with when one of its compensations could not be applied.
COMPENSATION_FAILED = ErrorCode.COMPENSATION_FAILED.value


@dataclass(frozen=True)
class Action:
    """What the runner does next: run a step, run a compensation, or nothing (the saga is final)."""

    kind: Literal["step", "compensate", "final"]
    name: str = ""


def new_saga(saga_id: str, request: PlaceOrder, request_hash: str, hold: tuple[str, int], now_ns: int) -> SagaRecord:
    """A fresh saga of `request` (stored with its `saga_id` set): every step pending, nothing held yet."""
    if request.saga_id != saga_id:
        request = request.model_copy(update={"saga_id": saga_id})
    return SagaRecord(
        saga_id=saga_id, order_id=saga_id, account=request.account, instrument=request.instrument,
        side=request.side, request=request, request_hash=request_hash, hold_asset=hold[0],
        hold_amount=hold[1], status=SagaStatus.PENDING,
        steps=[StepRecord(name=name, op_id=f"{saga_id}:{name}") for name in STEPS],
        created_ns=now_ns, updated_ns=now_ns,
    )


def next_action(saga: SagaRecord) -> Action:
    """The first unfinished step going forward, or compensation going back, or final."""
    if saga.status in FINAL_STATUSES:
        return Action("final")
    if saga.status is SagaStatus.COMPENSATING:
        for comp in saga.compensations:
            if comp.status not in (StepStatus.DONE, StepStatus.FAILED):
                return Action("compensate", comp.name)
        return Action("final")
    for step in saga.steps:
        if step.status is not StepStatus.DONE:
            return Action("step", step.name)
    return Action("final")


def injected_before(saga: SagaRecord, step: str) -> bool:
    """Whether the input asks this step to fail instead of running."""
    return saga.request.inject_failure_step == step


def injected_after(saga: SagaRecord, step: str) -> bool:
    """Whether the input asks the saga to fail right after this step committed."""
    return saga.request.inject_failure_step == f"after:{step}"


def start(saga: SagaRecord, name: str, now_ns: int) -> None:
    """Mark a step or compensation as started (the runner persists this before its body runs)."""
    record = saga.step(name)
    record.status = StepStatus.STARTED
    record.started_ns = record.started_ns or now_ns
    record.attempts += 1
    if saga.status is SagaStatus.PENDING:
        saga.status = SagaStatus.IN_PROGRESS
    saga.updated_ns = now_ns


def done(saga: SagaRecord, name: str, result: StepResult | None, now_ns: int) -> None:
    """A step or compensation committed; the saga completes or finishes compensating after the last."""
    record = saga.step(name)
    record.status = StepStatus.DONE
    record.ended_ns = now_ns
    record.result = result
    saga.updated_ns = now_ns
    if saga.status is SagaStatus.IN_PROGRESS and all(s.status is StepStatus.DONE for s in saga.steps):
        saga.status = SagaStatus.COMPLETED
    elif saga.status is SagaStatus.COMPENSATING:
        _end_compensating(saga)


def _end_compensating(saga: SagaRecord) -> None:
    """Once every compensation ran: `failed` if one could not apply (an operator must look) or the
    saga was refused outright at its first step (nothing ever happened), `compensated` otherwise."""
    if any(c.status not in (StepStatus.DONE, StepStatus.FAILED) for c in saga.compensations):
        return
    refused_first = saga.steps[0].status is StepStatus.FAILED and _is_refusal(saga.error)
    unapplied = any(c.status is StepStatus.FAILED for c in saga.compensations)
    saga.status = SagaStatus.FAILED if refused_first or unapplied else SagaStatus.COMPENSATED


def fail(saga: SagaRecord, name: str, error: dict[str, Any], now_ns: int) -> None:
    """A step failed for good (or on purpose): record why and plan the compensations."""
    record = saga.step(name)
    if record.status is not StepStatus.DONE:  # "after:<step>" fails a step that did commit
        record.status = StepStatus.FAILED
        record.ended_ns = now_ns
        record.error = error
    saga.error = {**error, "step": name}
    saga.status = SagaStatus.COMPENSATING
    saga.compensations = [StepRecord(name=comp, op_id=f"{saga.saga_id}:{comp}") for comp in plan(saga)]
    saga.updated_ns = now_ns
    if not saga.compensations:
        done_nothing(saga, now_ns)


def done_nothing(saga: SagaRecord, now_ns: int) -> None:
    """No compensation is needed: the saga ends as failed (refused) or compensated."""
    saga.status = SagaStatus.FAILED if _is_refusal(saga.error) else SagaStatus.COMPENSATED
    saga.updated_ns = now_ns


def compensation_failed(saga: SagaRecord, name: str, error: dict[str, Any], now_ns: int) -> None:
    """A compensation cannot be applied (e.g. a bust finds the money spent): an operator must act. The
    later compensations still run (each is safe alone), so the order is cancelled and its hold released
    down to what its fills take; the saga ends `failed` with `compensation_failed`."""
    record = saga.step(name)
    record.status = StepStatus.FAILED
    record.ended_ns = now_ns
    record.error = error
    if (saga.error or {}).get("code") != COMPENSATION_FAILED:  # the first one names the cause
        saga.error = {"code": COMPENSATION_FAILED, "message": f"{name}: {error.get('message', '')}",
                      "step": name, "cause": saga.error}
    saga.updated_ns = now_ns
    _end_compensating(saga)


def plan(saga: SagaRecord) -> list[str]:
    """Which compensations undo what may have happened, newest first.

    A step that started may have taken effect even if its reply was lost, and every compensation
    is idempotent and harmless when there is nothing to undo, so started steps are undone too.
    Fills the engine made are busted whether or not process_fills got to settle them: the maker's
    order was reduced either way, so they are settled and reversed together.
    """
    touched = {s.name for s in saga.steps if s.status in (StepStatus.STARTED, StepStatus.DONE)
               or (s.status is StepStatus.FAILED and _may_have_acted(s))}
    wanted = {
        "unsettle": "settle" in touched,
        "reverse_fills": bool(taker_fills(saga)),
        "cancel_order": "submit_order" in touched and saga.steps[1].status is not StepStatus.FAILED,
        "release_hold": "reserve_funds" in touched,
    }
    return [comp for comp in COMPENSATIONS if wanted[comp]]


def _may_have_acted(step: StepRecord) -> bool:
    """A failed step took no effect if it failed on purpose before running, or if it is one atomic
    call that was refused; a step of several calls may have made some of them."""
    if (step.error or {}).get("code") == INJECTED:
        return False
    return step.name not in ATOMIC_STEPS


def taker_fills(saga: SagaRecord) -> list[Fill]:
    """The fills this saga's order made as taker (the ones this saga settles)."""
    if saga.order is None:
        return []
    return [f for f in saga.order.fills if f.taker_order_id == saga.order_id]


def _is_refusal(error: dict[str, Any] | None) -> bool:
    return error is not None and error.get("code") in {str(c) for c in BUSINESS_CODES} | {
        str(ErrorCode.UNKNOWN_ACCOUNT)} and error.get("step") == STEPS[0]


def injected_error(step: str, after: bool) -> dict[str, Any]:
    """The error recorded for a failure injected on purpose."""
    where = f"after {step} committed" if after else f"at {step}"
    return {"code": INJECTED, "message": f"failure injected {where}"}
