"""The matching node over NATS: journaled commands, price-time fills, and bad input refused."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import msgpack
import pytest
from nats.aio.client import Client

from contracts.errors import ErrorCode, QtError
from nodes.matching.engine import REFUSALS_KEPT
from tests.matching.node_client import matching, order, start_matching
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer


@pytest.fixture
async def engine(own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]) -> Client:
    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc))
    return own_nc


async def test_ioc_buy_fills_the_first_of_two_equal_sells(engine: Client) -> None:
    await matching(engine, "submit", **order("s1", "bob", "SELL", "100.00", "5.00"))
    await matching(engine, "submit", **order("s2", "carol", "SELL", "100.00", "5.00"))

    taker = await matching(engine, "submit", **order("b1", "alice", "BUY", "100.00", "5.00", tif="IOC"))

    assert taker["status"] == "filled"
    assert [(f["maker_order_id"], f["price"], f["qty"]) for f in taker["fills"]] == [("s1", "100.00", "5.0000")]
    book = await matching(engine, "book", instrument="AAPL")
    assert book["asks"] == [["100.00", "5.0000"]] and book["bids"] == []
    assert (await matching(engine, "order", instrument="AAPL", order_id="s1"))["status"] == "filled"


async def test_a_filled_maker_leaves_and_the_next_taker_fills_the_next_maker(engine: Client) -> None:
    await matching(engine, "submit", **order("s1", "bob", "SELL", "100.00", "1.00"))
    await matching(engine, "submit", **order("s2", "carol", "SELL", "100.00", "1.00"))
    await matching(engine, "submit", **order("b1", "alice", "BUY", "100.00", "1.00"))

    second = await matching(engine, "submit", **order("b2", "alice", "BUY", "100.00", "1.00"))

    assert [f["maker_order_id"] for f in second["fills"]] == ["s2"]
    assert (await matching(engine, "book", instrument="AAPL"))["asks"] == []


async def test_the_same_order_submitted_twice_is_journaled_once(engine: Client) -> None:
    body = order("dup", "bob", "SELL", "101.00", "2.00")
    first = await matching(engine, "submit", **body)
    again = await matching(engine, "submit", **body)

    assert again == first
    status = await matching(engine, "status", instrument="AAPL")
    assert status["instruments"][0]["applied_seq"] == 1
    assert status["instruments"][0]["resting_orders"] == 1


BAD = [
    ("unknown instrument", {"instrument": "DOGE-USD"}, ErrorCode.UNKNOWN_INSTRUMENT),
    ("price off tick", {"price": "100.005"}, ErrorCode.INVALID_AMOUNT),
    ("qty off step", {"qty": "1.015"}, ErrorCode.QTY_OFF_STEP),
    ("qty off step below min", {"qty": "0.0050"}, ErrorCode.QTY_OFF_STEP),
    ("qty below min", {"instrument": "BTC-USD", "price": "67500.00", "qty": "0.00000500"}, ErrorCode.QTY_BELOW_MIN),
    ("negative qty", {"qty": "-1.00"}, ErrorCode.INVALID_AMOUNT),
    ("zero qty", {"qty": "0"}, ErrorCode.INVALID_AMOUNT),
    ("float price", {"price": 100.5}, ErrorCode.INVALID_AMOUNT),
    ("market with price", {"type": "MARKET"}, ErrorCode.MARKET_WITH_PRICE),
    ("limit without price", {"price": None}, ErrorCode.INVALID_PRICE),
    ("unknown side", {"side": "HOLD"}, ErrorCode.VALIDATION),
    ("unknown field", {"leverage": "10"}, ErrorCode.VALIDATION),
]


@pytest.mark.parametrize(("case", "change", "code"), BAD, ids=[b[0] for b in BAD])
async def test_bad_orders_are_refused_and_the_book_is_unchanged(
    engine: Client, case: str, change: dict, code: ErrorCode
) -> None:
    await matching(engine, "submit", **order("rest", "bob", "SELL", "100.00", "1.00"))
    before = await matching(engine, "book", instrument="AAPL")
    body = {**order("bad", "alice", "BUY", "99.00", "1.00"), **change}
    body = {k: v for k, v in body.items() if v is not None}

    with pytest.raises(QtError) as refused:
        await matching(engine, "submit", **body)

    assert refused.value.code is code, refused.value.message
    assert await matching(engine, "book", instrument="AAPL") == before


async def test_post_only_that_would_cross_is_refused_and_the_book_is_unchanged(engine: Client) -> None:
    await matching(engine, "submit", **order("rest", "bob", "SELL", "100.00", "1.00"))
    before = await matching(engine, "book", instrument="AAPL")

    with pytest.raises(QtError) as refused:
        await matching(engine, "submit", **order("po", "alice", "BUY", "100.00", "1.00", post_only=True))

    assert refused.value.code is ErrorCode.POST_ONLY_WOULD_TAKE
    after = await matching(engine, "book", instrument="AAPL")
    assert (after["bids"], after["asks"], after["checksum"]) == (before["bids"], before["asks"], before["checksum"])


async def test_cancel_of_an_unknown_or_foreign_order_is_refused(engine: Client) -> None:
    await matching(engine, "submit", **order("mine", "bob", "SELL", "100.00", "1.00"))
    before = await matching(engine, "book", instrument="AAPL")

    for order_id, account in (("nope", "bob"), ("mine", "mallory")):
        with pytest.raises(QtError) as refused:
            await matching(engine, "cancel", instrument="AAPL", order_id=order_id, account=account)
        assert refused.value.code is ErrorCode.UNKNOWN_ORDER

    after = await matching(engine, "book", instrument="AAPL")
    assert (after["asks"], after["checksum"]) == (before["asks"], before["checksum"])
    cancelled = await matching(engine, "cancel", instrument="AAPL", order_id="mine", account="bob")
    assert cancelled["status"] == "cancelled" and cancelled["remaining"] == "0.0000"


async def test_a_cancel_that_raced_ahead_of_its_order_still_cancels_it_when_sent_again(engine: Client) -> None:
    # A client (or a saga's compensation) may cancel an order id before the submit reaches the engine:
    # that cancel is unknown_order, but the same cancel sent after the order rests must cancel it, not
    # replay the first answer (clearing would release the hold of an order still in the book).
    with pytest.raises(QtError) as early:
        await matching(engine, "cancel", instrument="AAPL", order_id="late", account="bob")
    assert early.value.code is ErrorCode.UNKNOWN_ORDER
    await matching(engine, "submit", **order("late", "bob", "SELL", "101.00", "1.00"))

    cancelled = await matching(engine, "cancel", instrument="AAPL", order_id="late", account="bob")

    assert cancelled["status"] == "cancelled" and cancelled["remaining"] == "0.0000"
    assert (await matching(engine, "book", instrument="AAPL"))["asks"] == []
    again = await matching(engine, "cancel", instrument="AAPL", order_id="late", account="bob")
    assert again == cancelled  # a cancel that acted is remembered: its retry replays it


async def test_a_refused_cancel_forgotten_under_a_flood_of_unknown_ids_still_acts_when_sent_again(
        engine: Client) -> None:
    # Anyone may cancel ids that never existed; the engine keeps only the newest REFUSALS_KEPT of those
    # refusals, so the first one below is forgotten by the time it is sent again (within the journal's
    # duplicate window, which hands back its old entry): the node must ask the engine again.
    with pytest.raises(QtError):
        await matching(engine, "cancel", instrument="AAPL", order_id="late", account="bob")
    gate = asyncio.Semaphore(64)

    async def unknown(n: int) -> None:
        async with gate:
            with pytest.raises(QtError) as refused:
                await matching(engine, "cancel", instrument="AAPL", order_id=f"nobody-{n}", account="eve")
            assert refused.value.code is ErrorCode.UNKNOWN_ORDER

    await asyncio.gather(*(unknown(n) for n in range(REFUSALS_KEPT)))
    await matching(engine, "submit", **order("late", "bob", "SELL", "101.00", "1.00"))

    cancelled = await matching(engine, "cancel", instrument="AAPL", order_id="late", account="bob")

    assert cancelled["status"] == "cancelled"
    status = await matching(engine, "status", instrument="AAPL")
    assert status["instruments"][0]["resting_orders"] == 0


async def test_qt_book_prints_the_ladder(engine: Client, own_nats: NatsServer) -> None:
    await matching(engine, "submit", **order("a1", "bob", "SELL", "101.25", "3.00"))
    await matching(engine, "submit", **order("b1", "alice", "BUY", "100.75", "2.50"))
    qt = str(Path(sys.executable).parent / "qt")
    env = dict(os.environ, QT_NATS_URL=own_nats.url, QT_DATA_DIR=str(own_nats.data_dir), COLUMNS="100")

    shown = await asyncio.to_thread(subprocess.run, [qt, "book", "AAPL"], env=env, capture_output=True,
                                    text=True, timeout=60, check=False)
    refused = await asyncio.to_thread(subprocess.run, [qt, "book", "DOGE"], env=env, capture_output=True,
                                      text=True, timeout=60, check=False)

    assert shown.returncode == 0, shown.stderr
    assert "101.25" in shown.stdout and "3.0000" in shown.stdout and "100.75" in shown.stdout
    assert "spread 0.50" in shown.stdout
    assert refused.returncode == 1 and "unknown_instrument" in refused.stderr


async def test_l2_feed_carries_deltas_a_sequence_chain_and_the_book_checksum(engine: Client) -> None:
    feed = await engine.subscribe("md.book.AAPL")
    await matching(engine, "submit", **order("a1", "bob", "SELL", "101.00", "2.00"))
    await matching(engine, "submit", **order("b1", "alice", "BUY", "100.00", "1.00"))
    await matching(engine, "submit", **order("b2", "alice", "BUY", "101.00", "0.50", tif="IOC"))
    book = await matching(engine, "book", instrument="AAPL")

    levels: dict[tuple[str, int], int] = {}
    last_seq, checksum = 0, None
    while last_seq < book["seq"]:
        update = msgpack.unpackb((await feed.next_msg(timeout=5)).data)
        assert update["prev_seq"] == last_seq, "a gap in the feed"
        last_seq, checksum = update["seq"], update["checksum"]
        for side, price, qty in update["deltas"]:
            levels[(side, price)] = qty
    await feed.unsubscribe()

    assert checksum == book["checksum"]
    assert {k: v for k, v in levels.items() if v} == {("SELL", 10100): 15000, ("BUY", 10000): 10000}
