"""Instruments spread over two engines: each serves only its own on `matching.<instrument>.<endpoint>`,
one engine dying leaves the other's instruments trading, and an instrument nobody serves is refused."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from nats.aio.client import Client

from contracts.codec import Wire
from contracts.errors import ErrorCode, QtError
from contracts.instruments import INSTRUMENTS, engine_instruments
from contracts.subjects import ORDERS_STREAM, matching_engine_subject, matching_subject, orders_subject
from mesh.rpc import call, gather
from nodes.matching.node import owned_instruments
from tests.clearing.platform import refused
from tests.conftest import wait_for_instruments
from tests.matching.journal_replay import replay_journal
from tests.matching.node_client import matching, start_engines, start_matching
from tests.polling import eventually
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer

#: One instrument of each engine (`engine_instruments`: sorted symbols dealt out in turn).
FIRST, SECOND = engine_instruments(0, 2)[0], engine_instruments(1, 2)[0]
LOTS = {"AAPL": ("187.00", "1.0000"), "BTC-USD": ("67000.00", "0.01000000")}


def order(symbol: str, order_id: str, side: str, **extra: Any) -> dict[str, Any]:
    """A one-lot limit order at a fixed price of `symbol` (JSON wire)."""
    price, qty = LOTS[symbol]
    return {"order_id": order_id, "account": f"acct-{side.lower()}", "instrument": symbol, "side": side,
            "price": price, "qty": qty, **extra}


async def journaled(nc: Client, symbol: str) -> int:
    """Messages in `symbol`'s journal."""
    info = await nc.jetstream().stream_info(ORDERS_STREAM, subjects_filter=orders_subject(symbol))
    return sum((info.state.subjects or {}).values())


async def owners(nc: Client) -> list[list[str]]:
    """Every engine's answer to `matching.status`: the instruments each owns, sorted."""
    replies = await gather(nc, matching_engine_subject("status"), b"{}", wait_s=1.0)
    return sorted(sorted(i["instrument"] for i in json.loads(r.data)["instruments"]) for r in replies)


async def trade(nc: Client, symbol: str, tag: str) -> dict[str, Any]:
    """Rest a sell, cross it with a buy; the buy's result."""
    await matching(nc, "submit", **order(symbol, f"{tag}-s", "SELL"))
    return await matching(nc, "submit", **order(symbol, f"{tag}-b", "BUY"))


async def assert_book_is_a_fresh_replay(nc: Client, symbol: str) -> None:
    expected, _ = await replay_journal(nc, symbol)
    book = await matching(nc, "book", instrument=symbol, depth=500)
    assert (book["checksum"], book["seq"]) == (expected.book.checksum(), expected.applied_seq), symbol


async def test_two_engines_each_serve_only_their_own_instruments(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    await start_engines(own_nats, tmp_path, own_nc, processes)

    assert await owners(own_nc) == sorted([sorted(engine_instruments(0, 2)), sorted(engine_instruments(1, 2))])
    for symbol in (FIRST, SECOND):
        assert (await trade(own_nc, symbol, symbol))["status"] == "filled"
        await assert_book_is_a_fresh_replay(own_nc, symbol)


async def test_a_killed_engine_leaves_the_other_trading_and_recovers_only_its_own(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    first, second = await start_engines(own_nats, tmp_path, own_nc, processes)
    await matching(own_nc, "submit", **order(FIRST, "rests", "SELL"))
    book_before = await matching(own_nc, "book", instrument=FIRST, depth=500)
    second_token = (await matching(own_nc, "status", instrument=SECOND))["instruments"][0]["lease_token"]

    first.kill9()
    # the server drops a dead connection's subscriptions: FIRST's subject then has no responder
    gone = await eventually(lambda: refused(matching(own_nc, "book", instrument=FIRST)),
                            lambda exc: exc.code is ErrorCode.UNAVAILABLE, ignoring=(AssertionError,),
                            what=f"{FIRST} unavailable")
    journal = await journaled(own_nc, FIRST)
    while_down = await refused(matching(own_nc, "submit", **order(FIRST, "while-down", "BUY")))
    filled = await trade(own_nc, SECOND, "during")  # the other engine's instruments keep trading

    assert FIRST in gone.message and while_down.code is ErrorCode.UNAVAILABLE
    assert await journaled(own_nc, FIRST) == journal  # the refused submit changed nothing
    assert filled["status"] == "filled"
    first.start()  # as the supervisor does: same data dir, same instruments
    await wait_for_instruments(own_nc, engine_instruments(0, 2))
    assert await matching(own_nc, "book", instrument=FIRST, depth=500) == book_before
    await assert_book_is_a_fresh_replay(own_nc, FIRST)
    assert await owners(own_nc) == sorted([sorted(engine_instruments(0, 2)), sorted(engine_instruments(1, 2))])
    status = (await matching(own_nc, "status", instrument=SECOND))["instruments"][0]
    assert status["lease_token"] == second_token  # the other engine was never disturbed
    assert second.proc is not None and second.proc.poll() is None


async def test_an_instrument_no_engine_serves_is_refused_and_nothing_is_journaled(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc, QT_MATCHING_INSTRUMENTS="AAPL"))

    unserved = await refused(matching(own_nc, "submit", **order("BTC-USD", "nobody", "BUY")))

    assert unserved.code is ErrorCode.UNAVAILABLE and "BTC-USD" in unserved.message
    assert await journaled(own_nc, "BTC-USD") == 0
    assert await owners(own_nc) == [["AAPL"]]


async def test_a_body_naming_another_instrument_than_its_subject_is_refused(
    own_nats: NatsServer, own_nc: Client, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    processes.append(await start_matching(own_nats, tmp_path / "matching", own_nc))

    wrong = await refused(call(own_nc, matching_subject("AAPL", "submit"), order("BTC-USD", "astray", "BUY"),
                               wire=Wire.JSON))

    assert wrong.code is ErrorCode.VALIDATION
    assert (await journaled(own_nc, "AAPL"), await journaled(own_nc, "BTC-USD")) == (0, 0)


async def test_an_engine_given_an_unlisted_instrument_refuses_to_start(
    own_nats: NatsServer, tmp_path: Path, processes: list[NodeProcess]
) -> None:
    engine = NodeProcess("nodes.matching", own_nats.url, tmp_path / "matching", own_nats.data_dir,
                         extra_env={"QT_MATCHING_INSTRUMENTS": "AAPL,DOGE-USD"}).start()
    processes.append(engine)
    assert engine.proc is not None

    code = await asyncio.to_thread(engine.proc.wait, 30)

    assert code != 0
    assert "DOGE-USD" in (tmp_path / "matching" / "nodes.matching.log").read_text()


def test_the_split_deals_every_listed_instrument_to_exactly_one_engine() -> None:
    for engines in (1, 2, 3):
        shares = [engine_instruments(n, engines) for n in range(engines)]
        assert sorted(s for share in shares for s in share) == sorted(engine_instruments(0, 1))
        assert all(shares)
    with pytest.raises(ValueError, match="engine 2 of 2"):
        engine_instruments(2, 2)


def test_the_engine_setting_is_a_comma_list_of_listed_instruments() -> None:
    assert owned_instruments(None) == owned_instruments(" ") == tuple(INSTRUMENTS)
    assert owned_instruments("BTC-USD, AAPL,BTC-USD") == ("BTC-USD", "AAPL")
    for bad, code in ((",", ErrorCode.VALIDATION), ("AAPL,aapl", ErrorCode.UNKNOWN_INSTRUMENT)):
        with pytest.raises(QtError) as refused_setting:
            owned_instruments(bad)
        assert refused_setting.value.code is code
