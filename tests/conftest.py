"""Shared fixtures: one real nats-server (JetStream, nkey auth) per session, real SQLite files."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Iterator
from functools import partial
from pathlib import Path

import nats
import pytest
from nats.aio.client import Client
from nats.errors import Error as NatsError

from contracts.credentials import nkey_seed_path
from contracts.errors import QtError
from contracts.subjects import matching_subject
from mesh.rpc import call
from nodes.runtime.config import NodeConfig
from tests.polling import eventually
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer, free_port, permission_violations

#: Connections named with this refuse on purpose (tests/runtime/test_permissions.py); any other refusal is a bug.
DELIBERATE_REFUSALS = "perm-test-"


def assert_no_refusals(log_path: Path) -> None:
    """Fail when the server refused any node or client something: a role is missing a permission it needs."""
    refused = permission_violations(log_path, ignore_clients=DELIBERATE_REFUSALS)
    assert not refused, "nats-server refused a permission:\n" + "\n".join(refused[:20])


@pytest.fixture(scope="session")
def nats_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsServer]:
    """A real nats-server on free loopback ports with a temp JetStream store."""
    data = tmp_path_factory.mktemp("nats")
    server = NatsServer(data, port=free_port(), monitor_port=free_port())
    server.start(log_path=data / "server.log")
    try:
        yield server
    finally:
        server.stop()
    assert_no_refusals(data / "server.log")


@pytest.fixture(scope="session")
async def nc(nats_server: NatsServer) -> AsyncIterator[Client]:
    """A client connected as the `ops` user."""
    client = await nats.connect(
        nats_server.url, nkeys_seed=str(nkey_seed_path(nats_server.data_dir, "ops")), name="tests"
    )
    try:
        yield client
    finally:
        await client.close()


def node_config(nats_server: NatsServer, data_dir: Path, role: str) -> NodeConfig:
    """A node config pointing at the test server, with the role's generated seed."""
    return NodeConfig(role=role, nats_url=nats_server.url, data_dir=data_dir,
                      nkey_seed=nkey_seed_path(nats_server.data_dir, role))


class InProcessWallet:
    """A wallet node served by a task in the test's event loop; can be stopped and restarted."""

    def __init__(self, config: NodeConfig, client: Client) -> None:
        self.config = config
        self.client = client
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Serve, and return once the service answers PING."""
        from nodes.wallet.node import serve

        self._stop = asyncio.Event()
        self._task = asyncio.create_task(serve(self.config, self._stop))
        await wait_for_service(self.client, "wallet", self._task)

    async def stop(self) -> None:
        """Graceful stop: drain, flush the outbox, release the lease."""
        if self._task is not None:
            self._stop.set()
            await asyncio.wait_for(self._task, timeout=30)
            self._task = None


@pytest.fixture
async def wallet(nats_server: NatsServer, tmp_path: Path, nc: Client) -> AsyncIterator[InProcessWallet]:
    """A wallet node on a fresh SQLite file, running in this process; stopped cleanly after."""
    node = InProcessWallet(node_config(nats_server, tmp_path / "wallet-data", "wallet"), nc)
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


async def wait_for_service(
    client: Client, name: str, task: asyncio.Task[None] | None = None, timeout_s: float = 20.0
) -> None:
    """Wait until a micro service answers PING (fail fast if its task died)."""
    async def ping() -> None:
        if task is not None and task.done():
            task.result()
            raise AssertionError(f"{name} stopped before it answered")
        await client.request(f"$SRV.PING.{name}", b"", timeout=0.5)

    await eventually(ping, lambda _: True, timeout_s=timeout_s, ignoring=(NatsError, TimeoutError),
                     what=f"service {name} answering PING")


async def wait_for_instruments(client: Client, symbols: Iterable[str], timeout_s: float = 30.0) -> None:
    """Wait until an engine answers on each instrument's subject (each engine serves only its own)."""
    for subject in [matching_subject(symbol, "status") for symbol in symbols]:
        await eventually(partial(call, client, subject, {}, timeout=0.5), timeout_s=timeout_s, ignoring=(QtError,),
                         what=f"an engine answering {subject}")


@pytest.fixture
def processes() -> Iterator[list[NodeProcess]]:
    """Node processes a test starts; every one still alive is killed by PID at teardown."""
    started: list[NodeProcess] = []
    try:
        yield started
    finally:
        for proc in started:
            proc.kill()


@pytest.fixture
def own_nats(tmp_path: Path) -> Iterator[NatsServer]:
    """A nats-server of this test's own: for engines whose streams and leases must start empty."""
    server = NatsServer(tmp_path / "nats", port=free_port(), monitor_port=free_port())
    server.start(log_path=tmp_path / "nats-server.log")
    try:
        yield server
    finally:
        server.stop()
    assert_no_refusals(tmp_path / "nats-server.log")


@pytest.fixture
async def own_nc(own_nats: NatsServer) -> AsyncIterator[Client]:
    """An `ops` client of the test's own server."""
    client = await nats.connect(own_nats.url, nkeys_seed=str(nkey_seed_path(own_nats.data_dir, "ops")))
    try:
        yield client
    finally:
        await client.close()
