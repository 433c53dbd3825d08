"""One wallet owns a partition at a time; a second instance stands by and takes over."""

from __future__ import annotations

from pathlib import Path

import pytest
from nats.aio.client import Client

from tests.conftest import wait_for_service
from tests.polling import eventually
from tests.procs import NodeProcess
from tests.wallet.client import balance, new_account, wallet_call
from tooling.natsserver import NatsServer


async def _ping_replies(nc: Client) -> int:
    inbox = nc.new_inbox()
    sub = await nc.subscribe(inbox)
    await nc.publish("$SRV.PING.wallet", b"", reply=inbox)
    count = 0
    try:
        while True:
            await sub.next_msg(timeout=0.5)
            count += 1
    except TimeoutError:
        return count
    finally:
        await sub.unsubscribe()


@pytest.mark.slow
async def test_standby_serves_only_after_the_owner_leaves(
    nc: Client, nats_server: NatsServer, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    owner = NodeProcess("nodes.wallet", nats_server.url, tmp_path / "a", nats_server.data_dir)
    processes.append(owner.start())
    await wait_for_service(nc, "wallet")
    standby = NodeProcess("nodes.wallet", nats_server.url, tmp_path / "b", nats_server.data_dir)
    processes.append(standby.start())
    log = tmp_path / "b" / "nodes.wallet.log"
    await eventually(lambda: log.exists() and "standing by" in log.read_text(), what="the standby standing by")
    assert await _ping_replies(nc) == 1

    assert owner.terminate() == 0  # a clean stop releases the lease at once
    account = new_account("takeover")
    for _ in range(200):
        if await _ping_replies(nc) == 1:
            break
    await wallet_call(nc, "deposit", account=account, asset="USD", amount="3.00", op_id=f"{account}:1")
    assert await balance(nc, account) == ("3.00", "0.00")
    assert standby.terminate() == 0
