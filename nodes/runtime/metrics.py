"""Prometheus metrics per node with sub-millisecond buckets, served on a `metrics` endpoint."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

#: From 50 µs to 5 s: the interesting part of a NATS request is well below a millisecond.
LATENCY_BUCKETS = (
    0.00005, 0.0001, 0.00025, 0.0005, 0.00075, 0.001, 0.0025, 0.005, 0.0075,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


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

    def observe(self, endpoint: str, seconds: float, outcome: str) -> None:
        """Record one handled request."""
        self.requests.labels(endpoint, outcome).inc()
        self.latency.labels(endpoint).observe(seconds)

    def exposition(self) -> bytes:
        """The registry in Prometheus text format."""
        return generate_latest(self.registry)
