"""A node's micro service: decode, validate, dispatch and answer every request.

Each request runs in its own task (nats.py awaits a subscription callback before reading the next
message, which would serialise a node); in-flight tasks are drained on shutdown. micro times only the
callback, i.e. the spawn, so the service times each task itself and reports that in `$SRV.STATS`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from nats.aio.client import Client
from nats.micro.request import Request
from nats.micro.service import EndpointConfig, EndpointStats, Service, ServiceConfig, ServiceStats
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from pydantic import BaseModel, ValidationError

from contracts.codec import Wire, decode, encode, sniff
from contracts.errors import ErrorCode, QtError, validation_error
from contracts.permissions import METRICS_QUEUE_PREFIX, SERVICE_QUEUE
from contracts.subjects import BREAKERS_ENDPOINT, METRICS_ENDPOINT
from mesh.rpc import INSTANCE_HEADER, QT_ERROR_HEADER
from nodes.runtime.breaker import BreakerRegistry
from nodes.runtime.client import is_transient
from nodes.runtime.log import kv
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.tracing import fail, handling

log = logging.getLogger(__name__)



class WireView(Protocol):
    """Anything that renders itself for a wire (models with money do, as do hot-path views)."""

    def to_wire(self, wire: str) -> dict[str, Any]: ...


Body = BaseModel | WireView | dict[str, Any]


@dataclass
class Reply:
    """A handler's answer with extra headers (e.g. `Qt-Replayed`)."""

    body: Body
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Any], Awaitable[Body | Reply]]


@dataclass
class EndpointTimes:
    """What one endpoint's handler tasks really did: counted when each has answered."""

    answered: int = 0
    errors: int = 0
    processing_ns: int = 0
    last_error: str = ""

    def record(self, elapsed_ns: int, error: QtError | None) -> None:
        """One answered request, `error` if it was an error reply."""
        self.answered += 1
        self.processing_ns += elapsed_ns
        if error is not None:
            self.errors += 1
            self.last_error = f"{error.code}: {error.message}"


class TimedService(Service):
    """A micro service whose stats carry the handler tasks' own time and errors for spawned endpoints.

    micro's stats are the `$SRV.STATS` contract (`nats micro stats`, `qt services`); only the numbers it
    cannot see (work done after its callback returned) are replaced, from `EndpointTimes`.
    """

    def __init__(self, nc: Client, config: ServiceConfig, times: dict[str, EndpointTimes]) -> None:
        super().__init__(nc, config)
        self.times = times

    def stats(self) -> ServiceStats:
        """micro's stats, with processing time, average and errors of spawned endpoints as measured."""
        stats = super().stats()
        for endpoint in stats.endpoints:
            times = self.times.get(endpoint.name)
            if times is None:
                continue
            endpoint.num_errors = times.errors
            endpoint.last_error = times.last_error or None
            endpoint.processing_time = times.processing_ns
            endpoint.average_processing_time = times.processing_ns // times.answered if times.answered else 0
        return stats


@dataclass
class Route:
    """One endpoint: its name (the subject's last token), request model and handler."""

    name: str
    model: type[BaseModel]
    handler: Handler
    subject: str | None = None
    """The whole subject when it is not `<service>.<name>` (matching's `matching.<instrument>.submit`)."""
    every_instance: bool = False
    """Each instance answers, in a queue group of its own (as `metrics`): a caller gathers the replies."""


class NodeService:
    """Registers routes as `<group>.<endpoint>` micro endpoints and serves them concurrently."""

    def __init__(
        self, nc: Client, *, name: str, version: str, description: str, metrics: NodeMetrics,
        max_inflight: int = 10_000, breakers: BreakerRegistry | None = None, group: str | None = None,
        metadata: dict[str, str] | None = None,
    ) -> None:
        self.nc = nc
        self.name = name
        #: Subject prefix of the routes (`<group>.<endpoint>`); `name` unless the service is partitioned
        #: (`wallet.p1`). `metrics` and `breakers` stay on `<name>.*`, where a scrape hears every instance.
        self.group = group or name
        #: micro's service metadata (`$SRV.INFO`), e.g. a wallet's partition and the mesh's partition count.
        self.metadata = dict(metadata or {})
        self.version = version
        self.description = description
        self.metrics = metrics
        self.routes: list[Route] = []
        self._tracer = trace.get_tracer(f"qt.{name}")
        self._service: TimedService | None = None
        self._times: dict[str, EndpointTimes] = {}
        self._inflight: set[asyncio.Task[None]] = set()
        self._accepting = True
        self.max_inflight = max_inflight
        self.breakers = breakers

    @property
    def instance_id(self) -> str:
        """This instance's micro id (in `$SRV.*` replies and the `instance` label of its metrics); "" before start."""
        return self._service.id if self._service is not None else ""

    def route(self, name: str, model: type[BaseModel], *, subject: str | None = None,
              every_instance: bool = False) -> Callable[[Handler], Handler]:
        """Decorator: serve `handler(validated_model)` on `<service>.<name>` (or on `subject`)."""

        def register(handler: Handler) -> Handler:
            self.routes.append(Route(name, model, handler, subject, every_instance))
            return handler

        return register

    async def start(self) -> None:
        """Subscribe every endpoint (queue group `q`), then register with micro discovery.

        `metrics` is the exception: each instance is a queue group of its own, so a scrape that
        gathers every reply to `<name>.metrics` hears every instance (the gateway's `/metrics` does).
        """
        self._times = {route.name: EndpointTimes() for route in self.routes}
        self._service = TimedService(
            self.nc,
            ServiceConfig(name=self.name, version=self.version, description=self.description,
                          queue_group=SERVICE_QUEUE, stats_handler=self._endpoint_data, metadata=self.metadata),
            self._times,
        )
        routes = self._service.add_group(name=self.group)
        group = self._service.add_group(name=self.name)
        own_queue = f"{METRICS_QUEUE_PREFIX}{self._service.id}"
        for route in self.routes:
            config = EndpointConfig(name=route.name, handler=self._spawner(route), subject=route.subject,
                                    queue_group=own_queue if route.every_instance else None)
            await (routes if route.subject is None else self._service).add_endpoint(config)
        await group.add_endpoint(EndpointConfig(name=METRICS_ENDPOINT, handler=self._metrics, queue_group=own_queue))
        if self.breakers is not None:
            await group.add_endpoint(EndpointConfig(name=BREAKERS_ENDPOINT, handler=self._breakers))
        # Discovery last: the server sees every endpoint's SUB before the PING one, so a client that
        # got a PING reply never meets "no responders" on an endpoint (it did, once, in CI).
        await self._service.start()

    async def stop(self, drain_timeout_s: float = 10.0) -> None:
        """Stop taking requests, then let in-flight ones finish (bounded)."""
        self._accepting = False
        if self._service is not None:
            await self._service.stop()
        if self._inflight:
            await asyncio.wait(set(self._inflight), timeout=drain_timeout_s)

    def _spawner(self, route: Route) -> Callable[[Request], Awaitable[None]]:
        async def spawn(request: Request) -> None:
            task = asyncio.create_task(self._serve(route, request))
            self._inflight.add(task)
            task.add_done_callback(self._inflight.discard)

        return spawn

    async def _serve(self, route: Route, request: Request) -> None:
        started = time.perf_counter_ns()
        wire = sniff(request.data)
        failed: QtError | None = None
        with handling(self._tracer, route.subject or f"{self.name}.{route.name}", request.headers,
                      SpanKind.SERVER) as span:
            try:
                if not self._accepting:
                    raise QtError(ErrorCode.UNAVAILABLE, f"{self.name} is shutting down")
                if len(self._inflight) > self.max_inflight:  # shed load rather than queue without bound
                    raise QtError(ErrorCode.UNAVAILABLE, f"{self.name} is overloaded; retry later",
                                  {"inflight": len(self._inflight)})
                body, wire = decode(request.data)
                command = route.model.model_validate(body, context={"wire": wire})
                result = await route.handler(command)
                payload, headers = _render(result, wire)
                await request.respond(payload, headers=headers or None)
            except Exception as exc:  # every failure becomes a contract error reply
                failed = as_qt_error(exc)
                fail(span, failed.message)
                if failed.code is ErrorCode.INTERNAL:
                    log.exception("request failed", extra=kv(endpoint=route.name))
                await _respond_error(request, failed, wire)
        elapsed_ns = time.perf_counter_ns() - started
        self._times[route.name].record(elapsed_ns, failed)
        self.metrics.observe(route.name, elapsed_ns / 1e9, "ok" if failed is None else str(failed.code))

    async def _metrics(self, request: Request) -> None:
        if self.breakers is not None:
            now = time.monotonic()
            self.metrics.set_breaker_states({b.name: b.state(now) for b in self.breakers})
        await request.respond(self.metrics.exposition(),
                              headers={"Content-Type": "text/plain", INSTANCE_HEADER: self.instance_id})

    async def _breakers(self, request: Request) -> None:
        snapshot = self.breakers.snapshot(time.monotonic()) if self.breakers is not None else {}
        await request.respond(encode({"breakers": snapshot}, sniff(request.data)))

    def _endpoint_data(self, stats: EndpointStats) -> dict[str, Any] | None:
        # micro's `data` per endpoint: `nats micro info` prints it, `$SRV.STATS` carries it.
        if stats.name != BREAKERS_ENDPOINT or self.breakers is None:
            return None
        return {"breakers": self.breakers.snapshot(time.monotonic())}


def as_qt_error(exc: BaseException) -> QtError:
    """Map any failure to a contract error; unexpected ones become `internal` without details."""
    if isinstance(exc, QtError):
        return exc
    if isinstance(exc, ValidationError):
        return validation_error(exc.errors(include_url=False, include_input=False))
    if is_transient(exc):  # JetStream did not answer (a reconnect, a stream electing its leader): retry
        return QtError(ErrorCode.UNAVAILABLE, "a dependency did not answer; retry the same request")
    return QtError(ErrorCode.INTERNAL, "internal error")


def _render(result: Body | Reply, wire: Wire) -> tuple[bytes, dict[str, str]]:
    headers: dict[str, str] = {}
    if isinstance(result, Reply):
        headers = result.headers
        result = result.body
    if isinstance(result, dict):
        body = result
    elif hasattr(result, "to_wire"):
        body = result.to_wire(wire)
    else:
        body = result.model_dump(mode="python", context={"wire": wire})
    return encode(body, wire), headers


async def _respond_error(request: Request, error: QtError, wire: Wire) -> None:
    # micro's own error reply (Nats-Service-Error-Code / Nats-Service-Error), plus our code and body
    await request.respond_error(str(error.http_status), error.message[:200], encode(error.to_body(), wire),
                                headers={QT_ERROR_HEADER: str(error.code)})
