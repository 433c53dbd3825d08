"""Retry delays: the one doubling, capped, optionally jittered schedule every retry loop uses."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class Backoff:
    """Delays from `initial_s` doubling up to `max_s`; `jitter` (0 to 1) draws each from
    `[(1 - jitter) * delay, delay]`, so callers that failed together do not come back together."""

    initial_s: float = 0.05
    max_s: float = 2.0
    jitter: float = 0.0
    #: For `next_delay`: a run at least this long starts the schedule over.
    reset_after_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0 < self.initial_s <= self.max_s:
            raise ValueError(f"need 0 < initial_s <= max_s, got {self.initial_s}, {self.max_s}")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter is a fraction from 0 to 1, got {self.jitter}")

    def delays(self) -> Iterator[float]:
        """The wait before each retry, forever; take a fresh iterator to start over after a success."""
        delay = self.initial_s
        while True:
            yield random.uniform(delay * (1 - self.jitter), delay) if self.jitter else delay
            delay = min(delay * 2, self.max_s)

    def next_delay(self, previous: float | None, uptime_s: float) -> float:
        """The wait before restarting something that ran `uptime_s` after the last wait `previous`."""
        if previous is None or uptime_s >= self.reset_after_s:
            return self.initial_s
        return min(previous * 2, self.max_s)


#: Restarting a process that exited (`qt up`'s children, the gateway's workers): 0.5 s doubling to 10 s,
#: from the start again after 30 s of running.
RESTART: Final = Backoff(initial_s=0.5, max_s=10.0, reset_after_s=30.0)
