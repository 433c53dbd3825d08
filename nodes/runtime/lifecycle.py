"""Run a node: logging, tracing, event loop, and a clean stop on SIGTERM/SIGINT."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Awaitable, Callable

from contracts.credentials import PRIVATE_UMASK
from contracts.tracing import setup_tracing
from nodes.runtime.log import kv, setup_logging

NodeMain = Callable[[asyncio.Event], Awaitable[None]]


def run_node(name: str, main: NodeMain) -> None:
    """Run `main(stop)` until it returns; SIGTERM/SIGINT set `stop` so it can drain and close."""
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

    try:
        import uvloop

        uvloop.run(runner())
    except ImportError:  # uvloop is optional off Linux/macOS
        asyncio.run(runner())
