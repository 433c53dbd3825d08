"""The circuit breaker is a pure state machine: example tests, then random operation sequences."""

from __future__ import annotations

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from nodes.runtime.breaker import BreakerRegistry, BreakerState, CircuitBreaker

LEGAL_EDGES = {
    (BreakerState.CLOSED, BreakerState.OPEN),
    (BreakerState.OPEN, BreakerState.HALF_OPEN),
    (BreakerState.HALF_OPEN, BreakerState.CLOSED),
    (BreakerState.HALF_OPEN, BreakerState.OPEN),
}


def opened(threshold: int = 3, open_for_s: float = 1.0, half_open_max: int = 1) -> CircuitBreaker:
    breaker = CircuitBreaker("wallet", failure_threshold=threshold, open_for_s=open_for_s,
                             half_open_max=half_open_max)
    for _ in range(threshold):
        breaker.record_failure(0.0)
    return breaker


def test_consecutive_failures_at_the_threshold_open_it() -> None:
    breaker = CircuitBreaker("wallet", failure_threshold=3)
    breaker.record_failure(0.0)
    breaker.record_failure(0.0)
    assert breaker.state(0.0) is BreakerState.CLOSED

    breaker.record_failure(0.0)

    assert breaker.state(0.0) is BreakerState.OPEN
    assert breaker.opened_count == 1
    assert not breaker.allow(0.5)


def test_a_success_between_failures_keeps_it_closed() -> None:
    breaker = CircuitBreaker("wallet", failure_threshold=2)

    breaker.record_failure(0.0)
    breaker.record_success(0.0)
    breaker.record_failure(0.0)

    assert breaker.state(0.0) is BreakerState.CLOSED
    assert breaker.failures == 1


def test_after_the_cooldown_it_lets_half_open_max_trials_through() -> None:
    breaker = opened(open_for_s=1.0, half_open_max=2)

    assert [breaker.allow(1.0) for _ in range(3)] == [True, True, False]
    assert breaker.state(1.0) is BreakerState.HALF_OPEN


def test_a_trial_success_closes_and_a_trial_failure_reopens() -> None:
    closing, reopening = opened(), opened()
    assert closing.allow(1.0) and reopening.allow(1.0)

    closing.record_success(1.1)
    reopening.record_failure(1.1)

    assert closing.state(1.1) is BreakerState.CLOSED
    assert reopening.state(1.1) is BreakerState.OPEN
    assert reopening.opened_count == 2
    assert not reopening.allow(2.0)  # a new cooldown from the reopening


def test_a_released_trial_frees_its_slot_without_changing_state() -> None:
    breaker = opened()
    assert breaker.allow(1.0)
    assert not breaker.allow(1.0)

    breaker.release(1.0)

    assert breaker.state(1.0) is BreakerState.HALF_OPEN
    assert breaker.allow(1.0)


def test_invalid_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="failure_threshold"):
        CircuitBreaker("wallet", failure_threshold=0)


def test_registry_snapshot_lists_every_breaker_by_name() -> None:
    registry = BreakerRegistry()
    registry.add(CircuitBreaker("wallet"))
    registry.add(opened(threshold=1))

    snapshot = registry.snapshot(0.5)

    assert snapshot == {"wallet": {"state": "open", "failures": 1, "opened_count": 1}}
    registry.add(CircuitBreaker("matching"))
    assert list(registry.snapshot(0.5)) == ["matching", "wallet"]


class BreakerMachine(RuleBasedStateMachine):
    """Random sequences of allow / success / failure / release / time advances against a model."""

    @initialize(threshold=st.integers(1, 4), open_for_s=st.sampled_from([0.1, 0.5, 1.0, 2.0]),
                half_open_max=st.integers(1, 3))
    def start(self, threshold: int, open_for_s: float, half_open_max: int) -> None:
        self.breaker = CircuitBreaker("dep", failure_threshold=threshold, open_for_s=open_for_s,
                                      half_open_max=half_open_max)
        self.now = 0.0
        self.seen = BreakerState.CLOSED
        self.opened_at: float | None = None
        self.trials = 0  # allowed in this half_open period, minus the ones released

    @rule(dt=st.sampled_from([0.0, 0.1, 0.25, 0.5, 1.0, 3.0]))
    def advance(self, dt: float) -> None:
        self.now += dt

    @rule()
    def allow(self) -> None:
        state = self.observe()
        allowed = self.breaker.allow(self.now)
        if self.opened_at is not None and self.now - self.opened_at < self.breaker.open_for_s:
            assert not allowed, "allowed while open before the cooldown"
        if state is BreakerState.HALF_OPEN and allowed:
            self.trials += 1

    @rule()
    def success(self) -> None:
        self.observe()
        self.breaker.record_success(self.now)
        assert self.breaker.failures == 0

    @rule()
    def failure(self) -> None:
        self.observe()
        before = self.breaker.failures
        self.breaker.record_failure(self.now)
        assert self.breaker.failures == before + 1

    @precondition(lambda self: self.trials > 0)
    @rule()
    def release(self) -> None:
        self.observe()
        self.breaker.release(self.now)
        self.trials -= 1

    @invariant()
    def moves_only_along_legal_edges(self) -> None:
        self.observe()

    @invariant()
    def half_open_trials_never_exceed_the_limit(self) -> None:
        assert self.trials <= self.breaker.half_open_max

    @invariant()
    def closed_means_below_the_threshold(self) -> None:
        if self.breaker.state(self.now) is BreakerState.CLOSED:
            assert self.breaker.failures < self.breaker.failure_threshold

    def observe(self) -> BreakerState:
        """Follow the breaker's state, checking each move is a legal edge; a move starts a new period."""
        state = self.breaker.state(self.now)
        if state is not self.seen:
            assert (self.seen, state) in LEGAL_EDGES, f"{self.seen} -> {state}"
            if state is BreakerState.OPEN:
                self.opened_at = self.now
            self.trials = 0
            self.seen = state
        return state


TestBreakerProperties = BreakerMachine.TestCase
