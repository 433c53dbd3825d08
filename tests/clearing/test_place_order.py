"""place_order end to end: a crossing BUY settles both sides exactly, and the trade is on TRADES once."""

from __future__ import annotations

import uuid

import msgpack

from contracts.subjects import TRADES_STREAM, trades_subject
from tests.clearing.platform import FEES, Platform, balances, fund, place


def acct(prefix: str) -> str:
    """An account no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def test_a_buy_crossing_a_resting_sell_settles_both_sides_exactly(shared: Platform) -> None:
    nc = shared.nc
    buyer, seller = acct("buyer"), acct("seller")
    await fund(nc, buyer, USD=1_000_000)  # 10,000.00 USD
    await fund(nc, seller, MSFT=50_000)   # 5 shares
    fees_before = (await balances(nc, FEES)).get("USD", (0, 0))[0]

    sell = await place(nc, account=seller, instrument="MSFT", side="SELL", price="412.18", qty="2.0000")
    assert sell["status"] == "completed" and sell["order_status"] == "new"
    assert (await balances(nc, seller))["MSFT"] == (30_000, 20_000)

    buy = await place(nc, account=buyer, instrument="MSFT", side="BUY", price="415.00", qty="2.0000")
    assert buy["status"] == "completed", buy
    assert buy["order_status"] == "filled"
    assert [f["price"] for f in buy["fills"]] == ["412.18"]
    assert buy["hold_left"] == "0.00"

    quote = 82_436  # 2 x 412.18 = 824.36 USD
    fee = quote * 5 // 10_000  # 0.41 per side
    assert await balances(nc, buyer) == {"USD": (1_000_000 - quote - fee, 0), "MSFT": (20_000, 0)}
    assert await balances(nc, seller) == {"MSFT": (30_000, 0), "USD": (quote - fee, 0)}
    assert (await balances(nc, FEES))["USD"][0] - fees_before == 2 * fee

    js = nc.jetstream()
    trade_id = buy["fills"][0]["trade_id"]
    info = await js.stream_info(TRADES_STREAM)
    published = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        msg = await js.get_msg(TRADES_STREAM, seq)
        event = msgpack.unpackb(msg.data)
        if event["trade_id"] == trade_id:
            published.append((msg.subject, event))
    assert len(published) == 1
    subject, event = published[0]
    assert subject == trades_subject("MSFT") and event["kind"] == "trade" and event["qty"] == 20_000
