"""SIGKILL of clearing at every step boundary, of a second instance, and of wallet/matching mid-saga.

Every saga ends completed or compensated, no hold leaks, nothing is settled twice.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import msgpack
import pytest
from nats.aio.client import Client
from nats.js.api import DiscardPolicy

from contracts.clearing import COMPENSATIONS, FINAL_STATUSES
from contracts.errors import ErrorCode, QtError
from contracts.subjects import SAGA_INDEX_BUCKET, TRADES_STREAM, wallet_group
from mesh.rpc import call
from tests.clearing.platform import (
    FEES,
    Platform,
    balances,
    clearing,
    every_saga_final,
    fund,
    place,
    totals,
    wait_final,
    wallet,
)
from tests.polling import eventually

STEPS = ("reserve_funds", "submit_order", "process_fills", "settle")
QUOTE = 82_436  # 2 x 412.18 USD
FEE = QUOTE * 5 // 10_000


async def trades_of(nc: Client, trade_id: str) -> list[str]:
    """The kinds of every TRADES message about `trade_id` (one 'trade', maybe one 'bust')."""
    js = nc.jetstream()
    info = await js.stream_info(TRADES_STREAM)
    kinds = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        event = msgpack.unpackb((await js.get_msg(TRADES_STREAM, seq)).data)
        if event["trade_id"] == trade_id:
            kinds.append(event["kind"])
    return kinds


async def doomed(platform: Platform, proc_index: int, **body: Any) -> None:
    """Send a place_order that kills the clearing process; return once it is dead."""
    request = asyncio.create_task(place(platform.nc, timeout=20, **body))
    proc = platform.procs[proc_index].proc
    assert proc is not None
    await eventually(lambda: proc.poll() is not None, what="clearing killed by QT_CRASH_AT")
    request.cancel()


async def two_sided(platform: Platform) -> tuple[str, str, dict[str, Any]]:
    """A maker resting SELL 2 MSFT @ 412.18 and a funded buyer."""
    nc = platform.nc
    maker, taker = f"maker-{uuid.uuid4().hex[:6]}", f"taker-{uuid.uuid4().hex[:6]}"
    await fund(nc, maker, MSFT=50_000)
    await fund(nc, taker, USD=1_000_000)
    sell = await place(nc, account=maker, instrument="MSFT", side="SELL", price="412.18", qty="2.0000")
    assert sell["status"] == "completed"
    return maker, taker, sell


@pytest.mark.parametrize("crash_at", STEPS)
async def test_sigkill_at_each_step_boundary_then_restart_completes_exactly_once(
    fresh: Platform, crash_at: str
) -> None:
    nc = fresh.nc
    await fresh.start("wallet")
    await fresh.start("matching")
    first = await fresh.start("clearing")
    maker, taker, _ = await two_sided(fresh)
    first.terminate()
    await fresh.start("clearing", instance="-crashy", QT_CRASH_AT=crash_at)
    saga_id = f"crash-{crash_at.replace('_', '-')}"

    await doomed(fresh, len(fresh.procs) - 1, saga_id=saga_id, account=taker, instrument="MSFT", side="BUY",
                 price="415.00", qty="2.0000")
    await fresh.start("clearing", instance="-after")
    saga = await wait_final(nc, saga_id)

    assert saga["status"] == "completed", saga
    assert await balances(nc, taker) == {"USD": (1_000_000 - QUOTE - FEE, 0), "MSFT": (20_000, 0)}
    assert await balances(nc, maker) == {"MSFT": (30_000, 0), "USD": (QUOTE - FEE, 0)}
    assert (await balances(nc, FEES))["USD"] == (2 * FEE, 0)
    assert await trades_of(nc, saga["fills"][0]["trade_id"]) == ["trade"]
    assert (await wallet(nc, "verify"))["ok"]
    await every_saga_final(nc)


@pytest.mark.parametrize("compensation", COMPENSATIONS)
async def test_sigkill_during_a_compensation_then_restart_finishes_unwinding(
    fresh: Platform, compensation: str
) -> None:
    nc = fresh.nc
    await fresh.start("wallet")
    await fresh.start("matching")
    first = await fresh.start("clearing")
    maker, taker, _ = await two_sided(fresh)
    before = await totals(nc, [maker, taker, FEES])
    first.terminate()
    await fresh.start("clearing", instance="-crashy", QT_CRASH_AT=f"compensate:{compensation}")
    saga_id = f"crash-{compensation.replace('_', '-')}"

    # BUY 3 against 2 resting: a settled fill and a resting remainder, so all four compensations have work
    await doomed(fresh, len(fresh.procs) - 1, saga_id=saga_id, account=taker, instrument="MSFT",
                 side="BUY", price="415.00", qty="3.0000", inject_failure_step="after:settle")
    await fresh.start("clearing", instance="-after")
    saga = await wait_final(nc, saga_id)

    assert saga["status"] == "compensated", saga
    assert [c["name"] for c in saga["compensations"]] == list(COMPENSATIONS)
    assert all(c["status"] == "done" for c in saga["compensations"]), saga["compensations"]
    assert await totals(nc, [maker, taker, FEES]) == before
    assert await balances(nc, taker) == {"USD": (1_000_000, 0), "MSFT": (0, 0)}
    assert (await balances(nc, maker))["MSFT"] == (50_000, 0)
    assert (await balances(nc, FEES)).get("USD", (0, 0)) == (0, 0)
    order = await call(nc, "matching.MSFT.order", {"instrument": "MSFT", "order_id": saga_id}, timeout=10)
    assert order["status"] == "cancelled" and order["remaining"] == 0, order
    assert await trades_of(nc, saga["fills"][0]["trade_id"]) == ["trade", "bust"]
    assert (await wallet(nc, "verify"))["ok"]
    await every_saga_final(nc)


async def test_the_other_instance_finishes_a_saga_whose_instance_was_killed(fresh: Platform) -> None:
    nc = fresh.nc
    await fresh.start("wallet")
    await fresh.start("matching")
    await fresh.start("clearing", instance="-a", QT_CRASH_AT="submit_order")
    crashy = fresh.procs[-1]
    await fresh.start("clearing", instance="-b")
    buyer = f"buyer-{uuid.uuid4().hex[:6]}"
    await fund(nc, buyer, USD=10_000_000)
    lost = None
    for attempt in range(30):  # the queue group picks an instance per request
        saga_id = f"two-{attempt}"
        try:
            await place(nc, timeout=3, saga_id=saga_id, account=buyer, instrument="AAPL", side="BUY",
                        price="100.00", qty="1.0000")
        except QtError:
            lost = saga_id
            break
    assert lost is not None, "no request reached the crashing instance"
    assert crashy.proc is not None and crashy.proc.wait(timeout=10) is not None

    saga = await wait_final(nc, lost)
    assert saga["status"] == "completed" and saga["order_status"] == "new"
    placed = attempt + 1
    assert await balances(nc, buyer) == {"USD": (10_000_000 - placed * 10_005, placed * 10_005)}
    assert len(await every_saga_final(nc)) == placed


@pytest.mark.parametrize("victim", ["wallet", "matching"])
async def test_a_dependency_killed_mid_saga_makes_the_saga_wait_and_the_breaker_open(
    fresh: Platform, victim: str
) -> None:
    nc = fresh.nc
    nodes = {"wallet": await fresh.start("wallet"), "matching": await fresh.start("matching")}
    await fresh.start("clearing")
    maker, taker, _ = await two_sided(fresh)
    nodes[victim].kill9()

    request = asyncio.create_task(place(nc, timeout=60, account=taker, instrument="MSFT", side="BUY",
                                        price="415.00", qty="2.0000"))
    # clearing keeps one breaker per wallet partition and one per instrument
    breaker = {"wallet": wallet_group(0), "matching": "matching.MSFT"}.get(victim, victim)

    async def breaker_state() -> str:
        return str((await clearing(nc, "breakers"))["breakers"][breaker]["state"])

    await eventually(breaker_state, lambda state: state == "open", every_s=0.1, what=f"{victim} breaker open")
    assert not request.done()

    await fresh.start(victim)  # same data dir: it takes its lease back at once
    out = await asyncio.wait_for(request, timeout=60)
    assert out["status"] == "completed" and out["order_status"] == "filled"
    assert (await clearing(nc, "breakers"))["breakers"][breaker]["state"] == "closed"
    assert await balances(nc, taker) == {"USD": (1_000_000 - QUOTE - FEE, 0), "MSFT": (20_000, 0)}
    assert await balances(nc, maker) == {"MSFT": (30_000, 0), "USD": (QUOTE - FEE, 0)}


async def test_a_saga_whose_create_failed_after_its_record_landed_is_recovered(fresh: Platform) -> None:
    """The record is stored but its create fails (here its index entry is refused for longer than the
    create retries it; in a leader election, the record's own ack can be lost): no task drives it and no
    peer was lost, so recovery never looked for it and retries of that saga id waited forever. Now its
    instance adopts it as soon as it is readable, without waiting for its lease (two minutes here)."""
    nc, js = fresh.nc, fresh.nc.jetstream()
    await fresh.start("wallet")
    await fresh.start("matching")
    await fresh.start("clearing", QT_SAGA_LEASE_S="120")  # recovery by lease could not finish it in time
    buyer = f"buyer-{uuid.uuid4().hex[:6]}"
    await fund(nc, buyer, USD=10_000_000)
    first = await place(nc, account=buyer, instrument="AAPL", side="BUY", price="100.00", qty="1.0000")
    assert first["status"] == "completed"  # one index entry: a limit of 0 would mean none
    index = f"KV_{SAGA_INDEX_BUCKET}"
    config = (await js.stream_info(index)).config
    assert config.discard == DiscardPolicy.NEW  # full means refused, not an old entry dropped
    config.max_msgs = (await js.stream_info(index)).state.messages
    await js.update_stream(config)  # every new index entry is refused from here
    try:
        with pytest.raises(QtError) as refused:
            await place(nc, timeout=30, saga_id="orphan", account=buyer, instrument="AAPL", side="BUY",
                        price="100.00", qty="1.0000")
        assert refused.value.code is ErrorCode.UNAVAILABLE  # "retry the same request": the saga id decides
        stored = await clearing(nc, "saga_get", saga_id="orphan")
        assert stored["status"] not in FINAL_STATUSES  # the record landed; nothing runs it
    finally:
        config.max_msgs = -1
        await js.update_stream(config)

    saga = await wait_final(nc, "orphan")
    assert saga["status"] == "completed" and saga["order_status"] == "new"
    assert await balances(nc, buyer) == {"USD": (10_000_000 - 2 * 10_005, 2 * 10_005)}  # held once each
    retried = await place(nc, saga_id="orphan", account=buyer, instrument="AAPL", side="BUY", price="100.00",
                          qty="1.0000")
    assert retried["status"] == "completed" and retried["saga_id"] == "orphan"  # the first outcome, not a second order
    assert await balances(nc, buyer) == {"USD": (10_000_000 - 2 * 10_005, 2 * 10_005)}
