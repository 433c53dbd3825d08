"""A node's client for one dependency: requests go through a circuit breaker, idempotent ones are retried."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, Final

from nats.aio.client import Client
from nats.errors import (
    ConnectionClosedError,
    ConnectionDrainingError,
    ConnectionReconnectingError,
    MaxPayloadError,
    NoServersError,
    OutboundBufferLimitError,
    StaleConnectionError,
)
from nats.errors import Error as NatsError
from nats.js.errors import BadRequestError

from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from mesh.backoff import Backoff
from mesh.rpc import call
from nodes.runtime.breaker import CircuitBreaker
from nodes.runtime.tracing import inject

#: Errors that say the dependency did not answer: they count against the breaker and may be retried.
TRANSIENT: Final = frozenset({ErrorCode.UNAVAILABLE, ErrorCode.TIMEOUT})
#: Our own connection failing is the dependency being unreachable, as far as this node can tell.
CONNECTION_ERRORS: Final = (
    ConnectionClosedError, ConnectionDrainingError, ConnectionReconnectingError, NoServersError,
    OutboundBufferLimitError, StaleConnectionError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether a failure says the dependency did not answer (the same call may succeed later) rather
    than refused it (a contract error, a bad request, a bug: the same call gets the same answer)."""
    if isinstance(exc, QtError):
        return exc.code in TRANSIENT
    if isinstance(exc, MaxPayloadError | BadRequestError):
        return False
    return isinstance(exc, NatsError | ConnectionError | OSError)  # TimeoutError is an OSError


class ServiceClient:
    """Calls `<service>.<endpoint>` through a circuit breaker (its own unless one is given)."""

    def __init__(self, nc: Client, service: str, *, breaker: CircuitBreaker | None = None,
                 timeout_s: float = 5.0, retries: int = 2, backoff_s: float = 0.05,
                 subject: Callable[[str], str] | None = None) -> None:
        self.nc = nc
        self.service = service
        self.subject = subject if subject is not None else (lambda endpoint: f"{service}.{endpoint}")
        """Endpoint -> request subject (`<service>.<endpoint>` unless given, e.g. one instrument's)."""
        self.breaker = breaker if breaker is not None else CircuitBreaker(service)
        self.timeout_s = timeout_s
        self.retries = retries
        # Full jitter: callers that failed together do not come back together.
        self.backoff = Backoff(initial_s=backoff_s, max_s=backoff_s * 2**retries, jitter=1.0)

    async def call(self, endpoint: str, body: dict[str, Any], *, idempotent: bool, wire: Wire = Wire.MSGPACK,
                   headers: dict[str, str] | None = None, timeout_s: float | None = None) -> dict[str, Any]:
        """The decoded reply, or `QtError`; only `idempotent` calls are retried, and only on transient errors.

        An open breaker fails the call with `unavailable` before any request is sent.
        """
        subject = self.subject(endpoint)
        timeout = self.timeout_s if timeout_s is None else timeout_s
        headers = inject(headers) or None
        attempt = 0
        delays = self.backoff.delays()
        while True:
            if not self.breaker.allow(time.monotonic()):
                raise QtError(ErrorCode.UNAVAILABLE, f"{self.service} circuit open",
                              {"breaker": self.breaker.name, "state": str(self.breaker.state(time.monotonic()))})
            try:
                return await self._attempt(subject, body, wire, headers, timeout)
            except QtError as exc:
                # A non-idempotent request that timed out may have run: sending it again could run it twice.
                if not idempotent or exc.code not in TRANSIENT or attempt >= self.retries:
                    raise
            await asyncio.sleep(next(delays))
            attempt += 1

    async def _attempt(self, subject: str, body: dict[str, Any], wire: Wire, headers: dict[str, str] | None,
                       timeout: float) -> dict[str, Any]:
        """One request; reports its outcome to the breaker exactly once."""
        try:
            reply = await call(self.nc, subject, body, wire=wire, timeout=timeout, headers=headers)
        except QtError as exc:
            if exc.code in TRANSIENT:
                self.breaker.record_failure(time.monotonic())
            else:  # a business or validation error is an answer: the dependency is up
                self.breaker.record_success(time.monotonic())
            raise
        except CONNECTION_ERRORS as exc:
            self.breaker.record_failure(time.monotonic())
            raise QtError(ErrorCode.UNAVAILABLE, f"{subject}: {type(exc).__name__}") from exc
        except BaseException:
            self.breaker.release(time.monotonic())
            raise
        self.breaker.record_success(time.monotonic())
        return reply
