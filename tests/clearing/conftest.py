"""A platform per test module (nats-server + wallet + matching + clearing processes)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import nats
import pytest

from contracts.credentials import nkey_seed_path
from tests.clearing.platform import Platform
from tests.conftest import assert_no_refusals
from tooling.natsserver import NatsServer, free_port


async def make_platform(root: Path) -> Platform:
    """Start a fresh nats-server and connect an ops client (no nodes yet)."""
    server = NatsServer(root / "nats", port=free_port(), monitor_port=free_port())
    server.start(log_path=root / "nats-server.log")
    client = await nats.connect(server.url, nkeys_seed=str(nkey_seed_path(server.data_dir, "ops")))
    return Platform(server, client, root)


async def close_platform(platform: Platform) -> None:
    """Kill our processes, close the client, stop the server."""
    platform.kill_all()
    await platform.nc.close()
    platform.server.stop()
    assert_no_refusals(platform.root / "nats-server.log")


@pytest.fixture(scope="module")
async def shared(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """One running platform for the module's tests (each test uses accounts of its own)."""
    platform = await make_platform(tmp_path_factory.mktemp("platform"))
    try:
        await platform.start_all()
        yield platform
    finally:
        await close_platform(platform)


@pytest.fixture
async def fresh(tmp_path: Path) -> AsyncIterator[Platform]:
    """A platform of the test's own with no node started (crash tests start and kill them)."""
    platform = await make_platform(tmp_path)
    try:
        yield platform
    finally:
        await close_platform(platform)
