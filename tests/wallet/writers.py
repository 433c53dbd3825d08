"""A wallet writer over a real SQLite file with its commit loop running, for tests that drive it in-process."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

from nodes.wallet.store import EventStore
from nodes.wallet.writer import Writer


@contextlib.asynccontextmanager
async def running_writer(path: Path) -> AsyncIterator[Writer]:
    """A writer (synchronous FULL) whose loop runs until the block ends; then closed and its file shut."""
    writer = Writer(EventStore(path, synchronous="FULL"))
    task = asyncio.create_task(writer.run())
    try:
        yield writer
    finally:
        await writer.close()
        await task
        writer.shutdown()
        writer.store.close()
