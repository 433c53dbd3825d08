"""Clearing addresses each order's instrument: with two engines, one engine down stalls (and opens the
breaker of) only its own instruments; orders on the other engine's instruments keep filling."""

from __future__ import annotations

import asyncio
import uuid

from contracts.instruments import engine_instruments
from tests.clearing.platform import Platform, balances, clearing, fund, place, wait_final
from tests.conftest import wait_for_instruments
from tests.polling import eventually

DOWN, UP = "MSFT", "AAPL"  # on different engines (sorted symbols dealt out in turn)


async def breaker_states(platform: Platform) -> dict[str, str]:
    """Clearing's breaker states by name."""
    return {name: str(b["state"]) for name, b in (await clearing(platform.nc, "breakers"))["breakers"].items()}


async def test_an_engine_down_stalls_only_its_own_instruments(fresh: Platform) -> None:
    assert DOWN in engine_instruments(1, 2) and UP in engine_instruments(0, 2)
    nc = fresh.nc
    await fresh.start("wallet")
    _, down = await fresh.start_engines()
    await fresh.start("clearing")
    maker, taker = f"maker-{uuid.uuid4().hex[:6]}", f"taker-{uuid.uuid4().hex[:6]}"
    await fund(nc, maker, MSFT=50_000, AAPL=50_000)
    await fund(nc, taker, USD=10_000_000)
    down.kill9()

    stalled_id = f"stalled-{uuid.uuid4().hex[:8]}"
    stalled = asyncio.create_task(place(nc, timeout=60, saga_id=stalled_id, account=taker, instrument=DOWN,
                                        side="BUY", price="412.18", qty="1.0000"))
    await eventually(lambda: breaker_states(fresh), lambda states: states[f"matching.{DOWN}"] == "open",
                     every_s=0.1, what=f"matching.{DOWN} breaker open")
    sell = await place(nc, account=maker, instrument=UP, side="SELL", price="187.42", qty="1.0000")
    buy = await place(nc, account=taker, instrument=UP, side="BUY", price="187.42", qty="1.0000")

    assert (sell["status"], buy["status"], buy["order_status"]) == ("completed", "completed", "filled")
    assert (await breaker_states(fresh))[f"matching.{UP}"] == "closed"
    assert not stalled.done()
    down.start()  # same data dir and instruments: it takes its leases back and replays its journals
    await wait_for_instruments(nc, [DOWN])
    saga = await wait_final(nc, stalled_id, timeout_s=60)
    assert (saga["status"], saga["order_status"]) == ("completed", "new")
    await asyncio.wait_for(stalled, timeout=60)
    assert (await balances(nc, maker))["AAPL"] == (40_000, 0)
