"""Clearing's smart batching to the wallet: sagas waiting on the wallet share one `wallet.batch`
(counted by the wallet's own `$SRV.STATS`), a refused command fails only its own saga, and a
clearing killed while a batch is in flight loses nothing acknowledged and applies nothing twice.

The wallet is paused (SIGSTOP, our own PID) so the first batch stays in flight while the others
queue: which commands share a batch is then decided by events, not by timing.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.errors import ErrorCode, QtError
from tests.clearing.conftest import close_platform, make_platform
from tests.clearing.platform import Platform, balances, clearing, fund, place, wait_final, wallet
from tests.procs import NodeProcess

#: A resting BUY 1 AAPL @ 100.00 on an empty book holds 100.00 + 0.05 fee and makes no other wallet call.
HOLD = 10_005
FUNDS = 50_000
#: Long enough that a batch held by the paused wallet is never retried: the wallet counts exactly our batches.
SLOW_CALLS = {"QT_CLEARING_CALL_TIMEOUT_MS": "60000"}


@pytest.fixture(scope="module")
async def paused_ok(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Platform]:
    """A platform whose clearing waits (rather than retries) while the wallet is paused."""
    platform = await make_platform(tmp_path_factory.mktemp("batching"))
    try:
        await platform.start_all(**SLOW_CALLS)
        yield platform
    finally:
        await close_platform(platform)


@contextmanager
def paused(proc: NodeProcess) -> Iterator[None]:
    """SIGSTOP a process we started, SIGCONT it on the way out whatever happens."""
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(proc.pid, signal.SIGCONT)


async def wallet_requests(nc: Client) -> dict[str, int]:
    """The wallet's own request count per endpoint (`$SRV.STATS`)."""
    stats = json.loads((await nc.request("$SRV.STATS.wallet", b"", timeout=5)).data)
    return {e["name"]: e["num_requests"] for e in stats["endpoints"]}


async def waiting_on_wallet(nc: Client) -> int:
    """Wallet commands queued or in flight in clearing (`qt_batch_waiting`)."""
    text = (await nc.request("clearing.metrics", b"", timeout=5)).data.decode()
    found = re.search(r'^qt_batch_waiting\{batcher="wallet\.p0\.batch"\} (\S+)$', text, re.MULTILINE)
    return int(float(found.group(1))) if found else 0


async def until_waiting(nc: Client, count: int, timeout_s: float = 30.0) -> None:
    """Return once `count` wallet commands are queued or in flight in clearing."""
    deadline = time.monotonic() + timeout_s
    seen = -1
    while time.monotonic() < deadline:
        seen = await waiting_on_wallet(nc)
        if seen >= count:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{seen} wallet commands waiting in clearing, expected {count}")


def resting_buy(account: str, saga_id: str | None = None) -> dict[str, Any]:
    body = {"account": account, "instrument": "AAPL", "side": "BUY", "price": "100.00", "qty": "1.0000"}
    return {**body, "saga_id": saga_id} if saga_id else body


async def funded(nc: Client, prefix: str, count: int, usd: int = FUNDS) -> list[str]:
    accounts = [f"{prefix}-{uuid.uuid4().hex[:6]}" for _ in range(count)]
    for account in accounts:
        await fund(nc, account, USD=usd)
    return accounts


def wallet_proc(platform: Platform) -> NodeProcess:
    return next(p for p in platform.procs if p.module == "nodes.wallet")


async def test_sagas_waiting_on_the_wallet_share_one_wallet_batch(paused_ok: Platform) -> None:
    nc = paused_ok.nc
    accounts = await funded(nc, "share", 12)
    before = await wallet_requests(nc)

    with paused(wallet_proc(paused_ok)):
        orders = [asyncio.create_task(place(nc, timeout=60, **resting_buy(a))) for a in accounts]
        await until_waiting(nc, len(accounts))  # the first hold in flight, eleven queued behind it
    results = await asyncio.gather(*orders)

    after = await wallet_requests(nc)
    assert all(r["status"] == "completed" and r["order_status"] == "new" for r in results)
    # whatever the first batch carried stayed in flight while the rest queued behind it: one more batch took them
    assert after["batch"] - before["batch"] <= 2
    assert after["hold"] == before["hold"]  # no command went on its own
    for account in accounts:
        assert await balances(nc, account) == {"USD": (FUNDS - HOLD, HOLD)}


async def test_a_refused_command_in_a_shared_batch_fails_only_its_saga(paused_ok: Platform) -> None:
    nc = paused_ok.nc
    accounts = await funded(nc, "ok", 5)
    poor, = await funded(nc, "poor", 1, usd=HOLD - 1)
    opener, = await funded(nc, "opener", 1)
    before = await wallet_requests(nc)

    with paused(wallet_proc(paused_ok)):
        first = asyncio.create_task(place(nc, timeout=60, **resting_buy(opener)))
        await until_waiting(nc, 1)  # in flight: everything after it shares the next batch
        orders = [asyncio.create_task(place(nc, timeout=60, **resting_buy(a))) for a in [*accounts[:2], poor,
                                                                                         *accounts[2:]]]
        await until_waiting(nc, 1 + len(orders))
    results = await asyncio.gather(first, *orders, return_exceptions=True)

    refused = results[3]
    assert isinstance(refused, QtError) and refused.code is ErrorCode.INSUFFICIENT_FUNDS
    assert all(r["status"] == "completed" for i, r in enumerate(results) if i != 3)
    assert (await wallet_requests(nc))["batch"] - before["batch"] == 2
    assert await balances(nc, poor) == {"USD": (HOLD - 1, 0)}  # refused: nothing moved
    assert (await wallet(nc, "events", account=poor))["events"][-1]["type"] == "deposited"
    for account in [opener, *accounts]:
        assert await balances(nc, account) == {"USD": (FUNDS - HOLD, HOLD)}


async def test_clearing_killed_with_a_batch_in_flight_loses_nothing_and_applies_nothing_twice(
    fresh: Platform,
) -> None:
    nc = fresh.nc
    wallet_node = await fresh.start("wallet")
    await fresh.start("matching")
    doomed = await fresh.start("clearing", instance="-doomed", **SLOW_CALLS)
    done_before = await funded(nc, "acked", 3)
    acked = [await place(nc, **resting_buy(a)) for a in done_before]
    accounts = await funded(nc, "inflight", 8)

    with paused(wallet_node):
        orders = [asyncio.create_task(place(nc, timeout=60, **resting_buy(a, f"kill-{i}")))
                  for i, a in enumerate(accounts)]
        await until_waiting(nc, len(accounts))  # every saga recorded, its hold in flight or queued
        doomed.kill9()  # the wallet applies the in-flight batch once it runs again; nobody hears the reply
    for order in orders:  # their replies died with the process
        order.cancel()
    await fresh.start("clearing", instance="-after")

    finals = [await wait_final(nc, f"kill-{i}") for i in range(len(accounts))]
    assert all(s["status"] == "completed" and s["order_status"] == "new" for s in finals)
    for account in [*done_before, *accounts]:  # exactly one hold each: nothing lost, nothing twice
        assert await balances(nc, account) == {"USD": (FUNDS - HOLD, HOLD)}
        events = (await wallet(nc, "events", account=account))["events"]
        assert [e["type"] for e in events] == ["deposited", "held"]
    for saga in acked:
        assert (await clearing(nc, "saga_get", saga_id=saga["saga_id"]))["status"] == "completed"
    assert (await wallet(nc, "verify"))["ok"]
