"""State is rebuilt from TRADES on start: identical after SIGKILL, nothing lost or counted twice at the
boundary between the rebuild and the live tail, and the live `seq` chain continues across a restart."""

from __future__ import annotations

import asyncio
import json
import random

import pytest

from contracts.subjects import trades_feed_subject
from mesh.rpc import subscribed
from tests.conftest import wait_for_service
from tests.market_data.market import Market, md, minute_ago_ns, picture, publish, wait_seq

SECOND_NS = 1_000_000_000


async def mixed_history(market: Market, symbol: str, price: int, lot: int, n: int, seed: int) -> int:
    """`n` trades over the last 90 minutes with some busts and late copies; returns the last TRADES seq."""
    rng = random.Random(seed)
    start = minute_ago_ns(90)
    seq = 0
    for i in range(n):
        ts = start + rng.randrange(0, 88 * 60) * SECOND_NS
        ack = await publish(market.js, "trade", f"{symbol}-{i}", symbol, price + rng.randrange(-50, 50),
                            rng.randrange(1, 20) * lot, ts, side=rng.choice(["BUY", "SELL"]))
        seq = ack.seq
        if rng.random() < 0.2:
            seq = (await publish(market.js, "bust", f"{symbol}-{i}", symbol, 1, lot, ts + SECOND_NS)).seq
        elif rng.random() < 0.2:  # clearing's republish past the duplicate window: another message
            seq = (await publish(market.js, "trade", f"{symbol}-{i}", symbol, price, lot, ts + 2 * SECOND_NS,
                                 msg_id=f"again:{i}")).seq
    return seq


@pytest.mark.slow
async def test_sigkill_and_restart_rebuild_identical_state(market: Market) -> None:
    node = await market.start()
    await mixed_history(market, "AAPL", 19000, 100, 60, seed=1)
    last = await mixed_history(market, "BTC-USD", 6750000, 1000, 60, seed=2)
    await wait_seq(market.nc, "BTC-USD", last)
    before = {s: await picture(market.nc, s) for s in ("AAPL", "BTC-USD")}
    assert before["AAPL"]["ticker"]["trades"] > 30 and len(before["AAPL"]["1m"]["candles"]) > 10

    node.kill9()
    await market.start()
    assert {s: await picture(market.nc, s) for s in ("AAPL", "BTC-USD")} == before


@pytest.mark.slow
async def test_the_live_seq_chain_continues_across_a_restart(market: Market) -> None:
    node = await market.start()
    t0 = minute_ago_ns()
    await publish(market.js, "trade", "MSFT-1", "MSFT", 41218, 10000, t0)
    node.kill9()
    down = await publish(market.js, "trade", "MSFT-2", "MSFT", 41300, 10000, t0 + SECOND_NS)  # while it is down
    await market.start()
    assert (await wait_seq(market.nc, "MSFT", down.seq))["trades"] == 2

    seen: list[dict] = []
    got = asyncio.Event()

    async def on_msg(msg: object) -> None:
        seen.append(json.loads(msg.data))  # type: ignore[attr-defined]
        got.set()

    sub = await market.nc.subscribe(trades_feed_subject("MSFT"), cb=on_msg)
    await subscribed(market.nc)
    live = await publish(market.js, "trade", "MSFT-3", "MSFT", 41250, 10000, t0 + 2 * SECOND_NS)
    async with asyncio.timeout(20):
        await got.wait()
    assert (seen[0]["prev_seq"], seen[0]["seq"]) == (down.seq, live.seq)
    await sub.unsubscribe()


@pytest.mark.slow
async def test_trades_arriving_during_the_rebuild_are_counted_once(market: Market) -> None:
    t0 = minute_ago_ns(60)
    for i in range(300):
        await publish(market.js, "trade", f"AAPL-{i}", "AAPL", 19000 + i % 7, 100, t0 + i * 10 * SECOND_NS)
    market.spawn()
    ready = asyncio.create_task(wait_for_service(market.nc, "marketdata", timeout_s=30))
    n, after_ready = 300, 0
    while after_ready < 50 and n < 5000:  # keep publishing through the rebuild and past it
        last = await publish(market.js, "trade", f"AAPL-{n}", "AAPL", 19000 + n % 7, 100, t0 + n * SECOND_NS)
        n += 1
        after_ready += ready.done()
        if n % 20 == 0:
            await asyncio.sleep(0.01)
    await ready
    ticker = await wait_seq(market.nc, "AAPL", last.seq)
    assert ticker["trades"] == n and ticker["volume"] == f"{n / 100:.4f}"
    tape = await md(market.nc, "trades", instrument="AAPL", limit=1000)
    assert len(tape["trades"]) == min(n, 1000) and len({t["trade_id"] for t in tape["trades"]}) == len(tape["trades"])
    candles = await md(market.nc, "candles", instrument="AAPL", tf="1m", limit=1000)
    assert sum(c["trades"] for c in candles["candles"]) == n


@pytest.mark.slow
async def test_sigterm_stops_the_node_cleanly(market: Market) -> None:
    node = await market.start()
    await publish(market.js, "trade", "AAPL-1", "AAPL", 19000, 100, minute_ago_ns())
    assert node.terminate() == 0
