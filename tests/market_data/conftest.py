"""A fresh server per test, so TRADES starts empty and each test owns its sequences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.subjects import TRADES_STREAM
from mesh.jetstream import ensure_named
from tests.market_data.market import Market
from tooling.natsserver import NatsServer


@pytest.fixture
async def market(own_nats: NatsServer, own_nc: Client, tmp_path: Path) -> AsyncIterator[Market]:
    """TRADES created on a server of the test's own; every node process is killed at teardown."""
    js = own_nc.jetstream()
    await ensure_named(js, streams=(TRADES_STREAM,), buckets=())
    market = Market(own_nats, own_nc, js, tmp_path)
    try:
        yield market
    finally:
        for proc in market.procs:
            proc.kill()
