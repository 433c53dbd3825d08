"""Prometheus metrics per node with sub-millisecond buckets, served on a `metrics` endpoint."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from nodes.runtime.breaker import BreakerState

#: From 50 µs to 5 s: the interesting part of a NATS request is well below a millisecond.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)

#: `qt_breaker_state` values: higher is worse, so an alert is `qt_breaker_state > 0`.
BREAKER_STATE_VALUE: Final = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class NodeMetrics:
    """The metrics every node keeps, on a registry of its own."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "qt_requests", "Requests handled", ["endpoint", "outcome"], registry=self.registry
        )
        self.latency = Histogram(
            "qt_request_seconds", "Request handling time", ["endpoint"],
            buckets=LATENCY_BUCKETS, registry=self.registry,
        )
        self.breaker_state = Gauge(
            "qt_breaker_state", "Circuit breaker state (0 closed, 1 half_open, 2 open)", ["breaker"],
            registry=self.registry,
        )

    def observe(self, endpoint: str, seconds: float, outcome: str) -> None:
        """Record one handled request."""
        self.requests.labels(endpoint, outcome).inc()
        self.latency.labels(endpoint).observe(seconds)

    def set_breaker_states(self, states: Mapping[str, BreakerState]) -> None:
        """Set `qt_breaker_state` for each breaker (done at scrape time: states change with the clock)."""
        for name, state in states.items():
            self.breaker_state.labels(name).set(BREAKER_STATE_VALUE[state])

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
