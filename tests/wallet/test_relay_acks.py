"""The relay moves its cursor only when JetStream acknowledged every event of a flush."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from nats.aio.client import Client

from contracts.subjects import WALLET_STREAM
from contracts.wallet import Deposit
from mesh.jetstream import ensure_named
from nodes.runtime.pipeline import PublishFailed
from nodes.wallet.relay import OutboxRelay
from nodes.wallet.writer import Writer
from tests.wallet.writers import running_writer


@pytest.fixture
async def writer(tmp_path: Path) -> AsyncIterator[Writer]:
    """A writer over a real SQLite file with three committed deposits waiting in the outbox."""
    async with running_writer(tmp_path / "p0.sqlite") as writer:
        await writer.submit_many([Deposit(account="a", asset="USD", amount=1, op_id=f"d{i}") for i in range(3)])
        yield writer


async def test_a_flush_nobody_acknowledges_leaves_the_cursor_then_a_retry_relays_each_once(
    own_nc: Client, writer: Writer
) -> None:
    relay = OutboxRelay(own_nc, writer)  # no WALLET stream yet: every publish has no responders

    with pytest.raises(PublishFailed):
        await relay.flush_once()
    assert relay.published == 0
    assert len(await writer.call(writer.store.outbox_batch, 10)) == 3  # still waiting

    js = own_nc.jetstream()
    await ensure_named(js, streams=(WALLET_STREAM,), buckets=())
    assert await relay.flush_once() == 3
    assert await relay.flush_once() == 0
    assert (await js.stream_info(WALLET_STREAM)).state.messages == 3
