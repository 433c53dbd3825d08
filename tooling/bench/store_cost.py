"""What nats-server spends on one stored message under `sync_interval: always`, by batch size.

Measured on a server of its own (nothing else on it), with the nodes' own publisher
(`nodes.runtime.pipeline.PipelinedPublisher`): plain batches (every message pipelined, acks awaited
together) of 1 to 64 messages, and atomic batches (one commit ack) from 8 up. The server's CPU seconds
over each row, divided by the messages stored, say what a write costs at the batch sizes a load makes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Final, Literal

from nats.js.api import StorageType, StreamConfig

from nodes.runtime.pipeline import PipelinedPublisher
from tooling.bench.mesh import Mesh, client, cpu_seconds

STREAM: Final = "STORECOST"
SUBJECT: Final = "storecost.events"
#: About a wallet event or an execution report in msgpack.
PAYLOAD: Final = bytes(range(200))
PLAIN_SIZES: Final = (1, 2, 4, 8, 16, 32, 64)
ATOMIC_SIZES: Final = (8, 32, 64)
#: Messages stored per row (at least one batch): enough for a stable CPU reading in about a second.
MESSAGES: Final = 1_600


@dataclass(frozen=True)
class StoreCost:
    """One batch shape: how fast it stored and what each stored message cost the server."""

    mode: Literal["plain", "atomic"]
    batch: int
    messages: int
    seconds: float
    server_cpu_s: float

    @property
    def server_us(self) -> float:
        """nats-server CPU µs per stored message."""
        return self.server_cpu_s / self.messages * 1e6

    @property
    def batch_ms(self) -> float:
        """Wall ms per batch, its acks included."""
        return self.seconds / (self.messages / self.batch) * 1e3

    @property
    def rate(self) -> float:
        """Messages stored per second, one batch at a time."""
        return self.messages / self.seconds


async def store_costs(mesh: Mesh, messages: int = MESSAGES) -> list[StoreCost]:
    """Every batch shape, one after the other, on a fresh nats-server with our nats.conf."""
    server = mesh.server("nats-store-cost")
    assert server.process is not None
    nc = await client(server)
    try:
        await nc.jetstream().add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT], storage=StorageType.FILE,
                                                     allow_atomic=True))
        publisher = PipelinedPublisher(nc)
        rows = []
        for mode, sizes in (("plain", PLAIN_SIZES), ("atomic", ATOMIC_SIZES)):
            for size in sizes:
                rows.append(await _row(publisher, server.process.pid, mode, size, messages))
        return rows
    finally:
        await nc.close()
        mesh.stop_server(server)


async def _row(publisher: PipelinedPublisher, pid: int, mode: Literal["plain", "atomic"], size: int,
               messages: int) -> StoreCost:
    batch = [(SUBJECT, PAYLOAD, {}) for _ in range(size)]
    batches = max(1, messages // size)
    cpu_before, started = cpu_seconds(pid), time.perf_counter()
    for _ in range(batches):
        if mode == "plain":
            await publisher.publish(batch)
        elif await publisher.commit_atomic(batch) is None:
            raise RuntimeError(f"the server refused an atomic batch of {size}")
    return StoreCost(mode, size, batches * size, time.perf_counter() - started, cpu_seconds(pid) - cpu_before)
