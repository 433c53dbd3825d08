"""Connect to NATS with retry on first connect and unlimited reconnects afterwards."""

from __future__ import annotations

import asyncio
import logging

import nats
from nats.aio.client import Client

from contracts.permissions import inbox_prefix
from mesh.backoff import Backoff
from nodes.runtime.config import NodeConfig
from nodes.runtime.log import kv

log = logging.getLogger(__name__)


async def connect(config: NodeConfig, *, name: str, deadline_s: float = 30.0) -> Client:
    """Connect as `config.role`, retrying the first connection until `deadline_s` passes."""
    loop = asyncio.get_running_loop()
    give_up = loop.time() + deadline_s
    delays = Backoff(initial_s=0.1).delays()
    while True:
        try:
            return await nats.connect(
                servers=config.servers(),
                name=name,
                # the role's own reply inboxes: its permissions let it read no other role's replies
                inbox_prefix=inbox_prefix(config.role),
                nkeys_seed=str(config.nkey_seed) if config.nkey_seed else None,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.5,
                connect_timeout=2,
                drain_timeout=5,
                allow_reconnect=True,
                error_cb=_on_error,
                disconnected_cb=_on_disconnect,
                reconnected_cb=_on_reconnect,
            )
        except Exception as exc:
            if loop.time() >= give_up:
                raise
            delay = next(delays)
            log.warning("nats connect failed, retrying", extra=kv(error=repr(exc), delay_s=delay))
            await asyncio.sleep(delay)


async def _on_error(exc: Exception) -> None:
    log.warning("nats error", extra=kv(error=repr(exc)))


async def _on_disconnect() -> None:
    log.warning("nats disconnected")


async def _on_reconnect() -> None:
    log.info("nats reconnected")
