"""Prometheus at the gateway: its own HTTP metrics, and one exposition merging every node instance's scrape.

Each scrape is parsed with prometheus_client's parser and every sample gets `node` and `instance` labels,
so two instances of a node are two series of one family, under one `# HELP` / `# TYPE`.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from fastapi import FastAPI
from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.openapi import documented_path

log = logging.getLogger(__name__)

#: Prometheus text format 0.0.4, what `/metrics` answers with.
CONTENT_TYPE: Final = "text/plain; version=0.0.4"
#: From half a millisecond (a GET served from the gateway) to 30 s (a saga waiting on a dependency).
HTTP_BUCKETS: Final = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
#: The route label of a request no route matches (a fixed value: raw paths would be unbounded cardinality).
UNMATCHED: Final = "unmatched"


@dataclass(frozen=True)
class Scrape:
    """One instance's exposition text."""

    node: str
    instance: str
    text: str


class HttpMetrics:
    """The gateway's own metrics: requests by route template, method and status, and their latency.

    With `shared_dir` (a multi-worker gateway: prometheus_client writes every worker's values to files
    there), a scrape is the sum over all the workers, dead ones included (counters never go back), under
    the supervisor's PID as the instance.
    """

    def __init__(self, shared_dir: Path | None = None) -> None:
        self.shared_dir = shared_dir
        self.instance = f"{socket.gethostname()}:{os.getpid() if shared_dir is None else os.getppid()}"
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter("qt_http_requests", "HTTP requests answered", ["route", "method", "status"],
                                registry=self.registry)
        self.latency = Histogram("qt_http_request_seconds", "HTTP request time, until the response was sent",
                                 ["route", "method"], buckets=HTTP_BUCKETS, registry=self.registry)

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        """Record one answered request."""
        self.requests.labels(route, method, str(status)).inc()
        self.latency.labels(route, method).observe(seconds)

    def scrape(self) -> Scrape:
        """This gateway's own exposition, as a scrape of node `gateway`."""
        registry = self.registry
        if self.shared_dir is not None:
            registry = CollectorRegistry()
            MultiProcessCollector(registry, str(self.shared_dir))  # type: ignore[no-untyped-call]
        return Scrape("gateway", self.instance, generate_latest(registry).decode())


class HttpMetricsMiddleware:
    """Plain ASGI, outermost: counts every HTTP response, including those auth and rate limits refuse."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # what the client sees if the app raises before it answered

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_and_record)
        finally:
            elapsed = time.perf_counter() - started
            self.metrics.observe(route_template(scope), scope["method"], status, elapsed)


def route_template(scope: Scope) -> str:
    """The path template of the route that served `scope` (`/v1/orders/{order_id}`); for a request answered
    before routing (a bad token, a rate limit), the documented template its path matches."""
    path = getattr(scope.get("route"), "path", None)
    if isinstance(path, str):
        return path
    app = scope.get("app")
    documented = documented_path(app, scope["path"]) if isinstance(app, FastAPI) else None
    return documented.template if documented is not None else UNMATCHED


def merge(scrapes: Iterable[Scrape]) -> bytes:
    """One exposition of every scrape: each sample labelled `node` and `instance`, one HELP/TYPE per family."""
    families: dict[str, Metric] = {}
    for scrape in scrapes:
        try:
            parsed = list(text_string_to_metric_families(scrape.text))
        except ValueError as exc:  # one bad scrape must not cost the others
            log.warning("unparsable metrics from %s %s: %r", scrape.node, scrape.instance, exc)
            continue
        for family in parsed:
            merged = families.get(family.name)
            if merged is None:
                merged = families[family.name] = Metric(family.name, family.documentation, family.type, family.unit)
            elif merged.type != family.type:
                log.warning("metric %s is a %s on %s, not a %s: left out", family.name, family.type, scrape.node,
                            merged.type)
                continue
            for sample in family.samples:
                labels = {"node": scrape.node, "instance": scrape.instance,
                          **{k: v for k, v in sample.labels.items() if k not in ("node", "instance")}}
                merged.add_sample(sample.name, labels, sample.value, sample.timestamp)
    return generate_latest(_Families(families.values()))


class _Families:
    """A collector serving already-built families (what `generate_latest` renders)."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self.families = list(families)

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)
