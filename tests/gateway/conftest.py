"""One platform (nats-server, wallet, matching, clearing) and one gateway process for the gateway tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx
import pytest

from contracts.gateway import Role
from tests.clearing.conftest import close_platform, make_platform
from tests.clearing.platform import Platform
from tests.gateway.harness import GatewayProcess


@pytest.fixture(scope="session")
async def platform(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """Real node processes behind the gateway; every one is killed by PID at teardown."""
    made = await make_platform(tmp_path_factory.mktemp("gw-platform"))
    try:
        await made.start_all()
        yield made
    finally:
        await close_platform(made)


async def start_gateway(platform: Platform, name: str, **env: str) -> GatewayProcess:
    """A gateway process on a free port, ready (NATS connected, core services answering)."""
    process = GatewayProcess(platform.server.url, platform.root / name, platform.server.data_dir, name, env).start()
    try:
        await process.wait_ready()
    except BaseException:
        process.kill()
        raise
    return process


@contextlib.asynccontextmanager
async def running_gateway(platform: Platform, name: str, **env: str) -> AsyncIterator[GatewayProcess]:
    """`start_gateway`, and its process killed by PID on the way out, whatever happened."""
    process = await start_gateway(platform, name, **env)
    try:
        yield process
    finally:
        process.kill()


@pytest.fixture(scope="session")
async def gateway(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """The default gateway (a long idempotency wait, so concurrent duplicates never race the limit)."""
    async with running_gateway(platform, "gateway", QT_IDEMPOTENCY_WAIT_S="20") as process:
        yield process


@pytest.fixture(scope="session")
async def client(gateway: GatewayProcess) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the default gateway."""
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30.0) as made:
        yield made


@pytest.fixture(scope="session")
def ops_token(gateway: GatewayProcess) -> str:
    """An operator's token."""
    return gateway.token("operator", Role.OPS)
