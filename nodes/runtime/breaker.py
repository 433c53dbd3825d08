"""Circuit breakers as pure state machines: the caller passes the time, so tests drive them directly.

closed --(failure_threshold consecutive failures)--> open --(open_for_s elapsed)--> half_open;
half_open --(a trial succeeds)--> closed, half_open --(a trial fails)--> open.
"""

from __future__ import annotations

from collections.abc import Iterator
from enum import StrEnum
from typing import Any


class BreakerState(StrEnum):
    """Where a breaker stands; `half_open` lets a few trial calls probe the dependency."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Fails calls fast while a dependency is down, and probes it with trial calls after a cooldown."""

    def __init__(self, name: str, *, failure_threshold: int = 5, open_for_s: float = 2.0,
                 half_open_max: int = 1) -> None:
        if failure_threshold < 1 or half_open_max < 1 or open_for_s <= 0:
            raise ValueError("failure_threshold and half_open_max must be >= 1, open_for_s > 0")
        self.name = name
        self.failure_threshold = failure_threshold
        self.open_for_s = open_for_s
        self.half_open_max = half_open_max
        #: Consecutive failures; any success resets it.
        self.failures = 0
        #: How many times the breaker has opened (from closed or from half_open).
        self.opened_count = 0
        #: When the state last changed (the caller's clock); None while it never changed.
        self.last_change: float | None = None
        self._state = BreakerState.CLOSED
        self._trials = 0  # trial calls let through in this half_open period and not yet answered

    def state(self, now: float) -> BreakerState:
        """The state at `now` (an open breaker whose cooldown has elapsed is half_open)."""
        self._advance(now)
        return self._state

    def allow(self, now: float) -> bool:
        """Whether a call may go out now; in half_open each `True` takes one trial slot."""
        self._advance(now)
        if self._state is BreakerState.CLOSED:
            return True
        if self._state is BreakerState.HALF_OPEN and self._trials < self.half_open_max:
            self._trials += 1
            return True
        return False

    def record_success(self, now: float) -> None:
        """The dependency answered: reset the failure count; a trial's success closes the breaker."""
        self._advance(now)
        self.failures = 0
        if self._state is BreakerState.HALF_OPEN:
            self._move(BreakerState.CLOSED, now)

    def record_failure(self, now: float) -> None:
        """The dependency did not answer: count it; opens at the threshold, or at once in half_open."""
        self._advance(now)
        self.failures += 1
        if self._state is BreakerState.HALF_OPEN or (
            self._state is BreakerState.CLOSED and self.failures >= self.failure_threshold
        ):
            self._move(BreakerState.OPEN, now)
        # While open, a late answer to a call let through before it opened changes nothing.

    def release(self, now: float) -> None:
        """A let-through call ended without an outcome (e.g. cancelled): free its trial slot, count nothing."""
        self._advance(now)
        if self._state is BreakerState.HALF_OPEN and self._trials:
            self._trials -= 1

    def snapshot(self, now: float) -> dict[str, Any]:
        """`{state, failures, opened_count}` for stats and the CLI."""
        return {"state": str(self.state(now)), "failures": self.failures, "opened_count": self.opened_count}

    def _advance(self, now: float) -> None:
        if (self._state is BreakerState.OPEN and self.last_change is not None
                and now - self.last_change >= self.open_for_s):
            self._move(BreakerState.HALF_OPEN, self.last_change + self.open_for_s)

    def _move(self, state: BreakerState, at: float) -> None:
        self._state = state
        self.last_change = at
        self._trials = 0
        if state is BreakerState.OPEN:
            self.opened_count += 1


class BreakerRegistry:
    """The breakers of one node, by name, so its micro service can report them."""

    def __init__(self) -> None:
        self._breakers: dict[str, CircuitBreaker] = {}

    def add(self, breaker: CircuitBreaker) -> CircuitBreaker:
        """Register `breaker` (replacing one of the same name) and return it."""
        self._breakers[breaker.name] = breaker
        return breaker

    def __iter__(self) -> Iterator[CircuitBreaker]:
        return iter(self._breakers.values())

    def __len__(self) -> int:
        return len(self._breakers)

    def snapshot(self, now: float) -> dict[str, dict[str, Any]]:
        """`{name: {state, failures, opened_count}}` for every breaker, by name."""
        return {name: self._breakers[name].snapshot(now) for name in sorted(self._breakers)}
