"""What saga_get and saga_list say of an order: newest-first pages from the index, the order's current
status, busted fills shown as busts, and the fee per fill and per order."""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from nats.aio.msg import Msg

from contracts.clearing import PlaceOrder, SagaStatus
from contracts.codec import Wire
from contracts.matching import Side
from contracts.subjects import CLEARING_SERVICE, SAGA_INDEX_BUCKET, SAGAS_BUCKET, matching_subject
from mesh.jetstream import ensure_named
from mesh.rpc import call, gather
from nodes.clearing import saga as machine
from nodes.clearing.node import request_hash
from nodes.clearing.store import decode, encode
from tests.clearing.platform import Platform, clearing, fund, gone_quiet, place, wait_final
from tests.clearing.test_place_order import acct
from tests.polling import eventually


async def test_pages_hold_one_accounts_sagas_newest_first_and_complete(shared: Platform) -> None:
    nc = shared.nc
    mine, theirs = acct("pager"), acct("noise")
    await fund(nc, mine, USD=1_000_000)
    await fund(nc, theirs, USD=1_000_000)
    placed: list[str] = []
    for n in range(7):  # ids that do not sort by time: only the creation time may order them
        saga_id = f"{uuid.uuid4().hex[:6]}-{n}"
        await place(nc, account=mine, instrument="AAPL", side="BUY", price="1.00", qty="1.0000", saga_id=saga_id)
        await place(nc, account=theirs, instrument="AAPL", side="BUY", price="1.00", qty="1.0000")
        placed.append(saga_id)
    await place(nc, account=mine, instrument="AAPL", side="BUY", price="1.00", qty="1.0000", saga_id=placed[3])

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        page = await clearing(nc, "saga_list", account=mine, limit=3, **({"cursor": cursor} if cursor else {}))
        assert {s["account"] for s in page["sagas"]} <= {mine}
        seen += [s["saga_id"] for s in page["sagas"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == placed[::-1]  # newest first, every one, once (the retry of placed[3] is not a new saga)
    assert pages == 3


async def test_the_list_shows_the_orders_current_status(shared: Platform) -> None:
    nc = shared.nc
    resting, filled, buyer = acct("rest"), acct("maker"), acct("taker")
    await fund(nc, resting, USD=100_000)
    await fund(nc, filled, MSFT=10_000)
    await fund(nc, buyer, USD=1_000_000)
    kept = await place(nc, account=resting, instrument="AAPL", side="BUY", price="2.00", qty="1.0000")
    await call(nc, matching_subject("AAPL", "cancel"), {"order_id": kept["order_id"], "account": resting,
                                                 "instrument": "AAPL"}, wire=Wire.JSON)
    maker = await place(nc, account=filled, instrument="MSFT", side="SELL", price="400.00", qty="1.0000")
    assert maker["order_status"] == "new"
    await place(nc, account=buyer, instrument="MSFT", side="BUY", price="400.00", qty="1.0000")

    [cancelled] = (await clearing(nc, "saga_list", account=resting))["sagas"]
    assert cancelled["order_status"] == "cancelled" and cancelled["remaining"] == "0.0000"
    [sold] = (await clearing(nc, "saga_list", account=filled))["sagas"]
    assert sold["order_status"] == "filled" and sold["filled"] == "1.0000" and sold["remaining"] == "0.0000"
    assert sold["fee"] == "0.20" and sold["fee_asset"] == "USD"  # 400.00 x 5 bp, charged as maker


async def test_a_busted_fill_shows_as_a_bust_on_both_orders(shared: Platform) -> None:
    nc = shared.nc
    maker, taker = acct("bmaker"), acct("btaker")
    await fund(nc, maker, NVDA=20_000)
    await fund(nc, taker, USD=1_000_000)
    sell = await place(nc, account=maker, instrument="NVDA", side="SELL", price="825.50", qty="2.0000")
    try:
        out = await place(nc, account=taker, instrument="NVDA", side="BUY", price="825.50", qty="1.0000",
                          inject_failure_step="after:process_fills")
        assert out["status"] == "compensated"
        [trade_id] = out["busts"]
        assert out["order_status"] == "busted" and out["filled"] == "0.0000" and out["busted_qty"] == "1.0000"
        assert out["fee"] == "0.00"  # the bust refunded it

        shown = await clearing(nc, "saga_get", saga_id=sell["order_id"])
        assert shown["busts"] == [trade_id]
        assert [f["trade_id"] for f in shown["fills"]] == [trade_id]
        # the maker's remainder stays as the engine left it; the busted share stands nowhere
        assert shown["order_status"] == "new" and shown["filled"] == "0.0000"
        assert shown["busted_qty"] == "1.0000" and shown["remaining"] == "1.0000" and shown["fee"] == "0.00"
        assert shown["qty"] == "2.0000"  # an open order: filled + busted_qty + remaining = qty
    finally:
        await clearing(nc, "cancel_order", account=maker, order_id=sell["order_id"])


async def test_fees_are_shown_per_order_as_charged(shared: Platform) -> None:
    nc = shared.nc
    maker, taker = acct("fmaker"), acct("ftaker")
    await fund(nc, maker, NVDA=20_000)
    await fund(nc, taker, USD=1_000_000)
    await place(nc, account=maker, instrument="NVDA", side="SELL", price="825.50", qty="1.0000")
    await place(nc, account=maker, instrument="NVDA", side="SELL", price="826.00", qty="1.0000")
    out = await place(nc, account=taker, instrument="NVDA", side="BUY", price="826.00", qty="2.0000")
    # executed value 1651.50: fee(165150) = 82 cents, split 41 + 41 over the two fills
    assert out["fee"] == "0.82" and out["fee_asset"] == "USD" and out["filled"] == "2.0000"
    assert out["busts"] == [] and out["busted_qty"] == "0.0000"


async def test_a_saga_a_crash_left_unindexed_is_indexed_when_recovery_takes_it(shared: Platform) -> None:
    nc = shared.nc
    account = acct("crashed")
    await fund(nc, account, USD=100_000)
    saga_id = f"crash-{uuid.uuid4().hex[:8]}"
    command = PlaceOrder(account=account, instrument="AAPL", side=Side.BUY, price=100, qty=10_000, saga_id=saga_id)
    saga = machine.new_saga(saga_id, command, request_hash(command.model_dump(mode="python")), ("USD", 101),
                            time.time_ns())
    machine.start(saga, "reserve_funds", time.time_ns())
    saga.owner, saga.lease_until_ms = "elsewhere:1", 0  # its driver died between create and index
    await (await nc.jetstream().key_value(SAGAS_BUCKET)).create(saga_id, encode(saga))
    await gone_quiet(nc, saga.owner)

    async def sagas() -> list[dict[str, Any]]:
        return list((await clearing(nc, "saga_list", account=account))["sagas"])

    listed = await eventually(sagas, every_s=0.2, what="the saga listed (its instance gone quiet: recovery scans)")
    assert [s["saga_id"] for s in listed] == [saga_id]


async def test_sagas_stored_before_the_index_existed_are_indexed_on_start(fresh: Platform) -> None:
    js = fresh.nc.jetstream()
    await ensure_named(js, streams=(), buckets=(SAGAS_BUCKET,))
    sagas = await js.key_value(SAGAS_BUCKET)
    stored = []
    for n in range(3):
        command = PlaceOrder(account="legacy", instrument="AAPL", side=Side.BUY, price=100, qty=10_000)
        saga = machine.new_saga(f"old-{n}", command, request_hash(command.model_dump(mode="python")),
                                ("USD", 101), time.time_ns())
        saga.status = SagaStatus.FAILED  # final: recovery never touches it, only the backfill can index it
        await sagas.create(saga.saga_id, encode(saga))
        stored.append(saga.saga_id)

    await fresh.start("clearing")
    listed = await clearing(fresh.nc, "saga_list", account="legacy")
    assert [s["saga_id"] for s in listed["sagas"]] == stored[::-1]


async def test_a_start_learns_the_index_is_not_empty_without_reading_it(fresh: Platform) -> None:
    """The index holds an entry per saga ever placed: a start that listed them all to see whether there
    were any would not serve before it had read them (and held them in memory). It asks the count."""
    js = fresh.nc.jetstream()
    await ensure_named(js, streams=(), buckets=(SAGAS_BUCKET, SAGA_INDEX_BUCKET))
    await (await js.key_value(SAGA_INDEX_BUCKET)).put("someone.00000000000000000001.s-1", b"")
    readers: list[str] = []

    async def created(msg: Msg) -> None:
        readers.append(msg.subject)

    await fresh.nc.subscribe(f"$JS.EVENT.ADVISORY.CONSUMER.CREATED.KV_{SAGA_INDEX_BUCKET}.*", cb=created)
    await fresh.nc.flush()
    await fresh.start("clearing")  # serving: its start is over
    await fresh.nc.flush()
    assert readers == []  # the server announces every consumer it creates, before its creator hears back
    listed = await clearing(fresh.nc, "saga_list", account="someone")  # a page does read the index
    assert listed["sagas"] == []  # its entry names no stored saga
    await eventually(lambda: readers, what="the consumer a page reads the index with")


async def placed_while_final_writes_wait(fresh: Platform, *, instances: int) -> tuple[str, dict[str, Any], Any, Any]:
    """Wallet, matching and `instances` clearing instances that hold each final record back 6 s, and one
    order placed: (account, place reply, the `sagas` bucket, its stored entry, still in progress)."""
    await fresh.start("wallet")
    await fresh.start("matching")
    for n in range(instances):
        await fresh.start("clearing", instance="" if n == 0 else str(n + 1), QT_FINAL_WRITE_DELAY_S="6")
    await eventually(lambda: gather(fresh.nc, f"$SRV.PING.{CLEARING_SERVICE}", wait_s=0.3),
                     lambda replies: len(replies) == instances, what="every clearing instance")
    account = acct("ryw")
    await fund(fresh.nc, account, USD=1_000_000)
    out = await place(fresh.nc, account=account, instrument="AAPL", side="BUY", price="100.00", qty="1.0000")
    assert out["status"] == "completed"
    sagas = await fresh.nc.jetstream().key_value(SAGAS_BUCKET)
    stored = await sagas.get(out["saga_id"])
    assert decode(stored.value).status is SagaStatus.IN_PROGRESS  # the window is open: only memory has the end
    return account, out, sagas, stored


async def test_reads_sent_on_the_reply_see_what_it_said_while_the_final_record_is_written(fresh: Platform) -> None:
    """The place reply goes out before the saga's final record is written (held back 6 s here): the same
    instance answers `saga_get`, `saga_list` and `cancel_order` from the saga it replied with, not from the
    stored record still at its creation."""
    account, out, sagas, stored = await placed_while_final_writes_wait(fresh, instances=1)
    nc = fresh.nc

    shown = await clearing(nc, "saga_get", saga_id=out["saga_id"])
    assert (shown["status"], shown["order_status"]) == ("completed", "new")
    listed = (await clearing(nc, "saga_list", account=account))["sagas"]
    assert [(s["saga_id"], s["status"]) for s in listed] == [(out["saga_id"], "completed")]
    cancelled = await clearing(nc, "cancel_order", account=account, order_id=out["order_id"])
    assert cancelled["status"] == "cancelled"
    assert (await sagas.get(out["saga_id"])).revision == stored.revision  # answered before the record landed
    final = await wait_final(nc, out["saga_id"])
    assert (final["status"], final["order_status"]) == ("completed", "cancelled")
    landed = await eventually(lambda: sagas.get(out["saga_id"]), lambda e: e.revision > stored.revision,
                              timeout_s=30, what="the final record written")
    assert decode(landed.value).status is SagaStatus.COMPLETED


async def saga_gets_per_instance(nc: Any) -> list[int]:
    """`saga_get` requests each clearing instance has answered so far (its `$SRV.STATS`)."""
    replies = await gather(nc, f"$SRV.STATS.{CLEARING_SERVICE}", wait_s=0.5)
    return sorted(endpoint["num_requests"] for reply in replies for endpoint in json.loads(reply.data)["endpoints"]
                  if endpoint["name"] == "saga_get")


async def test_reads_sent_on_the_reply_to_the_other_instance_see_what_it_said(fresh: Platform) -> None:
    """Two instances, both holding final records back 6 s: a read that reaches the instance not driving the
    saga asks the driver (`saga_peek` on its own subject) instead of answering from the stored record."""
    account, out, sagas, stored = await placed_while_final_writes_wait(fresh, instances=2)
    nc = fresh.nc

    before = await saga_gets_per_instance(nc)
    for _ in range(16):  # each goes to either instance (queue group): both answer some
        shown = await clearing(nc, "saga_get", saga_id=out["saga_id"])
        assert (shown["status"], shown["order_status"]) == ("completed", "new")
        listed = (await clearing(nc, "saga_list", account=account))["sagas"]
        assert [(s["saga_id"], s["status"]) for s in listed] == [(out["saga_id"], "completed")]
    after = await saga_gets_per_instance(nc)
    assert len(after) == 2 and all(a > b for a, b in zip(after, before, strict=True)), (before, after)
    cancelled = await clearing(nc, "cancel_order", account=account, order_id=out["order_id"])
    assert cancelled["status"] == "cancelled"
    assert (await sagas.get(out["saga_id"])).revision == stored.revision  # all of it before the record landed
