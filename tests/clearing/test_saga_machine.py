"""Property tests of the pure saga state machine: every run ends final, undoing exactly what may have happened."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.clearing import COMPENSATIONS, STEPS, PlaceOrder, SagaStatus, StepStatus
from contracts.matching import Fill, OrderResult
from nodes.clearing import saga as machine

INJECTS = [None, *STEPS, *(f"after:{s}" for s in STEPS)]
REFUSAL = {"code": "insufficient_funds", "message": "no"}
FILL = Fill(trade_id="AAPL-1", instrument="AAPL", price=1, qty=100, maker_order_id="m", taker_order_id="s1",
            maker_account="b", taker_account="a", taker_side="BUY", maker_remaining=0, maker_executed_value=1,
            taker_executed_value=1)


def filled(fills: bool) -> OrderResult:
    """The engine's answer to the saga's submit: filled by FILL, or (no fills) cancelled."""
    return OrderResult(order_id="s1", instrument="AAPL", account="a", side="BUY", status="filled" if fills else
                       "cancelled", price=100, qty=100, filled=100 if fills else 0, executed_value=1 if fills else 0,
                       remaining=0, fills=[FILL] if fills else [], journal_seq=1)


def new(inject: str | None) -> machine.SagaRecord:
    order = PlaceOrder.model_validate({"account": "a", "instrument": "AAPL", "side": "BUY", "price": 100,
                                       "qty": 100, "inject_failure_step": inject})
    return machine.new_saga("s1", order, "h", ("USD", 101), 0)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(INJECTS), st.sampled_from([None, *STEPS]), st.booleans(),
       st.sampled_from([None, *COMPENSATIONS]))
def test_every_run_ends_final_and_undoes_only_what_happened(
    inject: str | None, refused_at: str | None, fills: bool, unapplied: str | None
) -> None:
    saga = new(inject)
    ran: list[str] = []
    reached: set[str] = set()  # steps whose body began (a refused multi-call step may have acted)
    for _ in range(20):
        action = machine.next_action(saga)
        if action.kind == "final":
            break
        machine.start(saga, action.name, 1)
        if action.kind == "step":
            if machine.injected_before(saga, action.name):
                machine.fail(saga, action.name, machine.injected_error(action.name, after=False), 2)
                continue
            reached.add(action.name)
            if action.name == refused_at:
                machine.fail(saga, action.name, REFUSAL, 2)
                continue
            ran.append(action.name)
            if action.name == "submit_order":
                saga.order = filled(fills)
            machine.done(saga, action.name, None, 2)
            if machine.injected_after(saga, action.name):
                machine.fail(saga, action.name, machine.injected_error(action.name, after=True), 3)
        else:
            ran.append(action.name)
            if action.name == unapplied:
                machine.compensation_failed(saga, action.name, REFUSAL, 2)
                continue
            machine.done(saga, action.name, None, 2)
    else:
        raise AssertionError("the saga did not end")

    comps = [c.name for c in saga.compensations]
    assert comps == [c for c in COMPENSATIONS if c in comps]  # newest step undone first
    assert ran[len(ran) - len(comps):] == comps  # each ran once, even after one could not apply
    if unapplied in comps:  # the others still ran: the order is cancelled and its hold released
        assert saga.status is SagaStatus.FAILED and saga.error and saga.error["code"] == "compensation_failed"
        assert all(c.status is (StepStatus.FAILED if c.name == unapplied else StepStatus.DONE)
                   for c in saga.compensations)
        return
    assert all(c.status is StepStatus.DONE for c in saga.compensations)
    failed = inject is not None or refused_at is not None
    if not failed:
        assert saga.status is SagaStatus.COMPLETED and comps == [] and ran == list(STEPS)
        return
    first_failure = min(STEPS.index(x.removeprefix("after:")) + (0.5 if x.startswith("after:") else 0)
                         for x in (inject, refused_at) if x is not None)
    if first_failure == 0 and refused_at == "reserve_funds" and inject != "reserve_funds":
        assert saga.status is SagaStatus.FAILED and comps == []  # refused outright: nothing to undo
        return
    assert saga.status is SagaStatus.COMPENSATED
    reserved = "reserve_funds" in ran
    assert ("release_hold" in comps) == reserved
    assert ("reverse_fills" in comps) == (fills and "submit_order" in ran)  # engine fills are always busted
    assert ("cancel_order" in comps) == ("submit_order" in ran)
    assert ("unsettle" in comps) == ("settle" in reached)
