"""Helpers for matching-node tests: a running engine process and a JSON client."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nats.aio.client import Client

from contracts.codec import Wire
from contracts.instruments import INSTRUMENTS, engine_instruments
from contracts.subjects import matching_engine_subject, matching_subject
from mesh.rpc import call
from tests.conftest import wait_for_instruments, wait_for_service
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer


async def start_matching(server: NatsServer, data_dir: Path, nc: Client, **env: str) -> NodeProcess:
    """Start `python -m nodes.matching` and wait until it serves."""
    node = NodeProcess("nodes.matching", server.url, data_dir, server.data_dir, extra_env=env).start()
    await wait_for_service(nc, "matching", timeout_s=30)
    return node


async def start_engines(server: NatsServer, root: Path, nc: Client, processes: list[NodeProcess],
                        engines: int = 2) -> list[NodeProcess]:
    """`engines` engine processes splitting the listed instruments as `qt up` does, each on its own data dir
    under `root` (`engine0`, ...) and added to `processes`; waits until every instrument is served."""
    started = []
    for n in range(engines):
        env = {"QT_MATCHING_INSTRUMENTS": ",".join(engine_instruments(n, engines))}
        started.append(NodeProcess("nodes.matching", server.url, root / f"engine{n}", server.data_dir,
                                   extra_env=env).start())
        processes.append(started[-1])
    await wait_for_instruments(nc, INSTRUMENTS)
    return started


async def matching(nc: Client, endpoint: str, **body: Any) -> dict[str, Any]:
    """Call `matching.<instrument>.<endpoint>` (or, naming no instrument, `matching.<endpoint>`) on the JSON
    wire (decimal strings)."""
    symbol = body.get("instrument")
    subject = matching_engine_subject(endpoint) if symbol is None else matching_subject(symbol, endpoint)
    return await call(nc, subject, body, wire=Wire.JSON, timeout=10)


def order(order_id: str, account: str, side: str, price: str | None, qty: str, **extra: Any) -> dict[str, Any]:
    """A submit body for AAPL (tick 0.01, lot and minimum 0.01 share)."""
    body = {"order_id": order_id, "account": account, "instrument": "AAPL", "side": side, "qty": qty, **extra}
    if price is not None:
        body["price"] = price
    return body
