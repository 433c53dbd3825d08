"""The gateway's one NATS connection (as the `gateway` nkey user) and the calls routes make over it.

A call whose reply model is given goes on the msgpack wire (integer units: the node neither parses
nor formats decimal strings) and the gateway renders the reply as the node would have on the JSON
wire; other calls go on the JSON wire and their replies pass through unchanged. An error reply is a
`QtError` whose code picks the HTTP status (`contracts.errors.HTTP_STATUS`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from typing import Any

import nats
from nats.aio.client import Client
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.kv import KeyValue
from pydantic import BaseModel

from contracts.base import dump
from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.permissions import inbox_prefix
from contracts.subjects import IDEMPOTENCY_BUCKET
from gateway.settings import Settings
from mesh.backoff import Backoff
from mesh.jetstream import ensure_bucket_ttl
from mesh.rpc import call, discover

log = logging.getLogger(__name__)


class NatsBridge:
    """Connects in the background (retrying forever), so the gateway serves `/health` without NATS."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.nc: Client | None = None
        self.idempotency: KeyValue | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Begin connecting; returns at once."""
        self._task = asyncio.create_task(self._connect_forever(), name="nats-connect")

    async def stop(self) -> None:
        """Stop connecting, drain the connection."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        if self.nc is not None:
            try:
                await self.nc.drain()
            except Exception as exc:  # the server may already be gone: nothing of ours is pending
                log.warning("nats drain failed: %r", exc)
                await self.nc.close()

    @property
    def ready(self) -> bool:
        """Connected, with the idempotency bucket at hand."""
        return self.nc is not None and self.nc.is_connected and self.idempotency is not None

    async def _connect_forever(self) -> None:
        delays = Backoff(initial_s=0.1).delays()
        while self.nc is None:
            try:
                nc = await nats.connect(
                    servers=self.settings.servers(), name=f"gateway-{os.getpid()}",
                    # the gateway's own reply inboxes: its permissions let it read no other role's replies
                    inbox_prefix=inbox_prefix("gateway"),
                    nkeys_seed=str(self.settings.nkey_seed) if self.settings.nkey_seed else None,
                    max_reconnect_attempts=-1, reconnect_time_wait=0.5, connect_timeout=2, allow_reconnect=True,
                    error_cb=_on_error,
                )
                js = nc.jetstream()
                await ensure_bucket_ttl(js, IDEMPOTENCY_BUCKET, self.settings.idempotency_ttl_s)
                self.idempotency = await js.key_value(IDEMPOTENCY_BUCKET)
                self.nc = nc
                log.info("gateway connected to %s", self.settings.nats_url)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                delay = next(delays)
                log.warning("nats connect failed, retrying in %.1fs: %r", delay, exc)
                await asyncio.sleep(delay)

    def client(self) -> Client:
        """The connection, or `unavailable` while there is none."""
        if self.nc is None or not self.nc.is_connected:
            raise QtError(ErrorCode.UNAVAILABLE, "the gateway is not connected to NATS; retry")
        return self.nc

    def bucket(self) -> KeyValue:
        """The `idempotency` bucket, or `unavailable` while not connected."""
        self.client()
        assert self.idempotency is not None
        return self.idempotency

    async def call(self, subject: str, body: BaseModel | dict[str, Any], trace: dict[str, str], *,
                   timeout: float | None = None, reply: type[BaseModel] | None = None) -> dict[str, Any]:
        """Request `subject` with the trace headers; error replies raise `QtError`. With a `reply` model
        the call goes on msgpack and the reply comes back in the JSON wire's shape (see the module)."""
        wire = Wire.JSON if reply is None else Wire.MSGPACK
        if isinstance(body, BaseModel):
            body = body.model_dump(mode="python", context={"wire": wire}, exclude_none=True)
        answer = await call(self.client(), subject, body, wire=wire, timeout=timeout or self.settings.call_timeout_s,
                            headers=trace or None)
        return answer if reply is None else json_shape(reply, answer)

    async def answers(self, subject: str, timeout: float = 0.5) -> bool:
        """True when something answers a request on `subject` (an error reply is an answer)."""
        try:
            await self.client().request(subject, b"", timeout=timeout)
        except (QtError, NoRespondersError, NatsTimeoutError):
            return False
        return True

    async def discover(self, wait_s: float = 0.3) -> list[dict[str, Any]]:
        """Every micro instance's `$SRV.INFO` merged with its `$SRV.STATS`, gathered for `wait_s`."""
        return await discover(self.client(), wait_s)


def json_shape(model: type[BaseModel], body: dict[str, Any]) -> dict[str, Any]:
    """A msgpack reply (integer units) as the node renders `model` on the JSON wire (decimal strings)."""
    parsed = model.model_validate(body, context={"wire": Wire.MSGPACK})
    to_wire = getattr(parsed, "to_wire", None)
    return to_wire(Wire.JSON) if to_wire is not None else dump(parsed, Wire.JSON)


async def _on_error(exc: Exception) -> None:
    log.warning("nats error: %r", exc)
