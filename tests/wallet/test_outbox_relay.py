"""Events reach the WALLET stream with msg-id = event id and the request's traceparent."""

from __future__ import annotations

import msgpack
from nats.aio.client import Client

from tests.conftest import InProcessWallet
from tests.wallet.client import new_account, wallet_call

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def test_each_event_is_relayed_with_its_id_and_trace(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("relay")
    reply = await nc.request(
        "wallet.p0.deposit",
        msgpack.packb({"account": account, "asset": "ETH", "amount": 123, "op_id": f"{account}:1"}),
        timeout=5, headers={"traceparent": TRACEPARENT},
    )
    event_id = msgpack.unpackb(reply.data)["event_ids"][0]

    sub = await nc.jetstream().subscribe(f"wallet.events.{account}.ETH", ordered_consumer=True)
    try:
        msg = await sub.next_msg(timeout=10)
    finally:
        await sub.unsubscribe()

    assert msg.headers is not None
    assert msg.headers["Nats-Msg-Id"] == event_id
    assert msg.headers["traceparent"].split("-")[1] == TRACEPARENT.split("-")[1]  # same trace, child span
    event = msgpack.unpackb(msg.data)
    assert (event["event_id"], event["type"], event["amount"], event["version"]) == (event_id, "deposited", 123, 1)


async def test_events_page_in_order_with_a_cursor(nc: Client, wallet: InProcessWallet) -> None:
    account = new_account("pages")
    for i in range(5):
        await wallet_call(nc, "deposit", account=account, asset="USD", amount="1.00", op_id=f"{account}:{i}")

    first = await wallet_call(nc, "events", account=account, limit=3)
    rest = await wallet_call(nc, "events", account=account, after=first["next_after"], limit=3)

    versions = [e["version"] for e in first["events"] + rest["events"]]
    assert versions == [1, 2, 3, 4, 5]
    assert rest["next_after"] is None
    assert first["events"][0]["amount"] == "1.00"
