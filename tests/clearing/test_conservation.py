"""Money conservation: thousands of random orders, cancels and injected failures from 20 accounts.

Afterwards every asset sums to what was deposited, every open order keeps exactly the hold it
needs, accounts without open orders hold nothing, every saga in the bucket is final, and the
wallet's hash chain verifies.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
from collections import defaultdict
from typing import Any

import pytest

from contracts.errors import QtError
from contracts.instruments import INSTRUMENTS
from contracts.matching import OrderResult
from contracts.money import format_amount
from contracts.subjects import matching_subject
from nodes.clearing import amounts
from tests.clearing.platform import FEES, Platform, balances, clearing, every_saga_final, fund, place, wallet
from tests.polling import eventually

ORDERS = int(os.environ.get("QT_CONSERVATION_ORDERS", "2000"))
ACCOUNTS = [f"acc{i:02d}" for i in range(20)]
DEPOSITS = {"USD": 50_000_000, "AAPL": 2_000_000, "BTC": 200_000_000}  # 500k USD, 200 AAPL, 2 BTC
INJECT = ["reserve_funds", "submit_order", "process_fills", "settle",
          "after:reserve_funds", "after:submit_order", "after:process_fills", "after:settle"]


def random_order(rng: random.Random, account: str) -> dict[str, Any]:
    """A limit or market order near the reference price: often crossing, sometimes IOC/FOK."""
    symbol = rng.choice(["AAPL", "BTC-USD"])
    spec = INSTRUMENTS[symbol]
    side = rng.choice(["BUY", "SELL"])
    qty = rng.randint(1, 5) * (100 if symbol == "AAPL" else 100_000)
    body: dict[str, Any] = {"account": account, "instrument": symbol, "side": side,
                            "qty": format_amount(spec.base, qty), "stp": rng.choice(["dc", "co", "cn", "cb"])}
    if rng.random() < 0.1:
        body["type"] = "MARKET"
        if side == "BUY":
            body["max_quote"] = format_amount(spec.quote, spec.notional(spec.reference_price * 11 // 10, qty)[0])
    else:
        offset = rng.randint(-5, 5) * spec.tick * (1 if symbol == "AAPL" else 100)
        body["price"] = format_amount(spec.quote, spec.reference_price + offset)
        body["tif"] = rng.choices(["GTC", "IOC", "FOK"], [6, 2, 1])[0]
    if rng.random() < 0.1:
        body["inject_failure_step"] = rng.choice(INJECT)
    return body


async def open_orders(platform: Platform, placed: list[tuple[str, str, str]]) -> list[dict[str, Any]]:
    """The engine's record of every placed order that still rests."""
    out = []
    for symbol, order_id, _ in placed:
        try:
            order = await clearing_order(platform, symbol, order_id)
        except QtError:
            continue
        if order["status"] in ("new", "partially_filled"):
            out.append(order)
    return out


async def clearing_order(platform: Platform, symbol: str, order_id: str) -> dict[str, Any]:
    """matching.<instrument>.order in integer units."""
    from mesh.rpc import call

    return await call(platform.nc, matching_subject(symbol, "order"), {"instrument": symbol, "order_id": order_id},
                      timeout=10)


async def holds_match(platform: Platform, placed: list[tuple[str, str, str]], context: str,
                      timeout_s: float = 30.0) -> None:
    """Wait until every account's held amounts equal what its open orders need (EXEC-driven releases are
    asynchronous); fail with the last difference and `context` otherwise."""

    async def difference() -> str:
        need: dict[tuple[str, str], int] = defaultdict(int)
        for order in await open_orders(platform, placed):
            spec = INSTRUMENTS[order["instrument"]]
            asset = spec.quote if order["side"] == "BUY" else spec.base
            need[(order["account"], asset)] += amounts.hold_left(spec, OrderResult.model_validate(order))
        diff = ""
        for account in sorted({account for _, _, account in placed}):  # every account that placed an order
            for asset, (_, held) in (await balances(platform.nc, account, platform.partitions)).items():
                if held != need.get((account, asset), 0):
                    diff = f"{account} {asset}: held {held}, open orders need {need.get((account, asset), 0)}"
        return diff

    await eventually(difference, lambda diff: diff == "", timeout_s=timeout_s, every_s=0.5,
                     what=f"holds equal to open orders ({context})")


@pytest.mark.slow
async def test_random_orders_cancels_and_failures_conserve_money(fresh: Platform) -> None:
    seed = int(os.environ.get("QT_PROPERTY_SEED", str(random.randrange(2**32))))
    rng = random.Random(seed)
    nc = fresh.nc
    await fresh.start_all()
    for account in ACCOUNTS:
        await fund(nc, account, **DEPOSITS)
    placed: list[tuple[str, str, str]] = []  # (instrument, order id, account)
    outcomes: dict[str, int] = defaultdict(int)
    plan = [(rng.random(), random_order(rng, rng.choice(ACCOUNTS))) for _ in range(ORDERS)]
    queue: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
    for item in plan:
        queue.put_nowait(item)

    async def worker() -> None:
        while not queue.empty():
            roll, body = queue.get_nowait()
            if roll < 0.15 and placed:  # cancel a random earlier order (maybe filled already)
                _symbol, order_id, account = placed[int(roll * 1e6) % len(placed)]
                try:
                    await clearing(nc, "cancel_order", account=account, order_id=order_id)
                    outcomes["cancel"] += 1
                except QtError as exc:
                    outcomes[f"cancel:{exc.code}"] += 1
            try:
                out = await place(nc, timeout=30, **body)
                outcomes[out["status"]] += 1
                placed.append((body["instrument"], out["order_id"], body["account"]))
            except QtError as exc:
                outcomes[str(exc.code)] += 1
                if "saga_id" in exc.detail:
                    placed.append((body["instrument"], exc.detail["saga_id"], body["account"]))

    await asyncio.gather(*(worker() for _ in range(8)))
    context = f"seed={seed} outcomes={dict(outcomes)}"
    assert outcomes["completed"] > ORDERS // 2, context
    assert outcomes["compensated"] > 0, context

    totals: dict[str, int] = defaultdict(int)
    for account in [*ACCOUNTS, FEES]:
        for asset, (available, held) in (await balances(nc, account)).items():
            totals[asset] += available + held
    assert dict(totals) == {asset: amount * len(ACCOUNTS) for asset, amount in DEPOSITS.items()}, context
    await holds_match(fresh, placed, context)

    for symbol, order_id, account in placed:  # close every order: nothing may stay held
        with contextlib.suppress(QtError):
            await clearing(nc, "cancel_order", account=account, order_id=order_id, instrument=symbol)
    await holds_match(fresh, placed, context)
    for account in ACCOUNTS:
        assert all(held == 0 for _, held in (await balances(nc, account)).values()), context
    sagas = await every_saga_final(nc)  # the whole bucket, not a page of the index
    assert {order_id for _, order_id, _ in placed} <= set(sagas), context
    assert not any((s["error"] or {}).get("code") == "compensation_failed" for s in sagas.values()), context
    assert (await wallet(nc, "verify"))["ok"], context
