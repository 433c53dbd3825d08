"""Run a node: logging, tracing, event loop, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any

from nats.aio.client import Client

from contracts.credentials import PRIVATE_UMASK
from contracts.exits import EXIT_LEASE_LOST
from mesh.tracing import setup_tracing
from nodes.runtime.lease import LeaseLost
from nodes.runtime.log import kv, setup_logging

log = logging.getLogger(__name__)

NodeMain = Callable[[asyncio.Event], Awaitable[None]]


def run_node(name: str, main: NodeMain) -> None:
    """Run `main(stop)` until it returns; SIGTERM/SIGINT set `stop` so it can drain and close. A `main` that
    raises `LeaseLost` ends the process with `EXIT_LEASE_LOST`."""
    # SQLite files (and their -wal/-shm), snapshots and anything else a node writes under the data
    # dir grant group and other nothing, however the node was started.
    os.umask(PRIVATE_UMASK)
    log = setup_logging(name)
    setup_tracing(name)

    async def runner() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        log.info("starting", extra=kv(node=name))
        await main(stop)
        log.info("stopped", extra=kv(node=name))

    run: Callable[[Coroutine[Any, Any, None]], None] = asyncio.run
    with contextlib.suppress(ImportError):  # uvloop is optional off Linux/macOS
        import uvloop

        run = uvloop.run
    try:
        run(runner())
    except LeaseLost as exc:  # another owner has it now: exit with the code that says so (a restart stands by)
        log.warning("lease lost, exiting", extra=kv(node=name, lease=str(exc), exit_code=EXIT_LEASE_LOST))
        raise SystemExit(EXIT_LEASE_LOST) from None


async def until_stopped(stop: asyncio.Event, tasks: Iterable[asyncio.Task[Any]]) -> list[tuple[str, BaseException]]:
    """Wait until `stop` is set or one of `tasks` ends; the (task name, error) of each that ended failing."""
    stop_task = asyncio.create_task(stop.wait())
    try:
        done, _ = await asyncio.wait({stop_task, *tasks}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop_task.cancel()
    return [(t.get_name(), exc) for t in done
            if t is not stop_task and not t.cancelled() and (exc := t.exception()) is not None]


async def disconnect(nc: Client) -> None:
    """Drain (in-flight replies and publishes leave first), or just close when the server is already gone."""
    try:
        await nc.drain()
    except Exception as exc:  # whatever a node keeps is in its store or JetStream, not in this connection
        log.warning("nats drain failed", extra=kv(error=repr(exc)))
        await nc.close()
