"""`qt seed`: demo money, two-sided books 15 levels deep on every instrument, and a few hundred trades.

Every resting order goes through the place-order saga (funds held behind it) and every id is fixed
(op_ids `seed:<account>:<asset>[:mm]`, saga ids `seed-...`), so seeding twice adds nothing: the
second run gets the first answers back. It speaks NATS as the `ops` nkey user, the operator: over
HTTP, deposits are ops-only too.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from nats.aio.client import Client
from rich.console import Console

from contracts.clearing import PlaceOrder
from contracts.errors import QtError
from contracts.instruments import INSTRUMENTS, Instrument
from contracts.money import format_amount
from contracts.subjects import ClearingEndpoint, WalletEndpoint, clearing_subject
from contracts.wallet import Deposit
from tooling.ops import request, wallet_request
from tooling.supervisor import say

USERS: Final = ("alice", "bob", "carol", "dan")
MAKER, TAKER = "mm1", "mm2"
#: Decimal strings at each asset's scale (contracts/money.py).
USER_FUNDS: Final = (("USD", "100000.00"), ("AAPL", "100.0000"), ("BTC", "2.00000000"))
MARKET_MAKER_FUNDS: Final = {
    MAKER: (("USD", "2000000.00"), ("AAPL", "1000.0000"), ("MSFT", "1000.0000"), ("NVDA", "1000.0000"),
            ("BTC", "10.00000000"), ("ETH", "100.00000000")),
    TAKER: (("USD", "1000000.00"), ("AAPL", "500.0000"), ("MSFT", "500.0000"), ("NVDA", "500.0000"),
            ("BTC", "5.00000000"), ("ETH", "50.00000000")),
}
LEVELS: Final = 15
TRADES_PER_INSTRUMENT: Final = 60


@dataclass(frozen=True)
class Ladder:
    """How one instrument's demo book looks: price step between levels and size per level (units)."""

    step: int
    level_qty: int
    trade_qty: int


def ladder(spec: Instrument) -> Ladder:
    """Five ticks apart for shares (0.05); coarser for crypto so the book spans a visible range."""
    if spec.base in ("BTC", "ETH"):
        step = 500 if spec.base == "BTC" else 50  # 5.00 / 0.50 USD
        return Ladder(step, 50 * 10 ** (spec.qty_scale - 2), 10 ** (spec.qty_scale - 2))  # 0.5 / 0.01
    return Ladder(5 * spec.tick, 50 * 10**spec.qty_scale, 10**spec.qty_scale)  # 50 shares / 1 share


async def deposit(nc: Client, account: str, asset: str, amount: str, op_id: str) -> None:
    """One idempotent deposit (a repeat replays the first answer)."""
    command = Deposit.model_validate({"account": account, "asset": asset, "amount": amount, "op_id": op_id},
                                     context={"wire": "json"})
    await wallet_request(nc, WalletEndpoint.DEPOSIT, account, command)


async def place(nc: Client, body: dict[str, Any]) -> dict[str, Any]:
    """One order through the saga on the JSON wire."""
    command = PlaceOrder.model_validate(body, context={"wire": "json"})
    return await request(nc, clearing_subject(ClearingEndpoint.PLACE_ORDER), command, timeout=30)


async def fund(nc: Client, console: Console) -> int:
    """Users' and market makers' deposits; returns how many are in place."""
    jobs = [(a, asset, amount, f"seed:{a}:{asset}") for a in (*USERS, MAKER, TAKER) for asset, amount in USER_FUNDS]
    jobs += [(a, asset, amount, f"seed:{a}:{asset}:mm") for a, funds in MARKET_MAKER_FUNDS.items()
             for asset, amount in funds]
    done = 0
    for account, asset, amount, op_id in jobs:
        try:
            await deposit(nc, account, asset, amount, op_id)
            done += 1
        except QtError as exc:
            say(console, f"seed {account} {asset}: error {exc.code}: {exc.message}")
    return done


def book_orders(spec: Instrument) -> list[dict[str, Any]]:
    """mm1's resting bids and asks, LEVELS deep, one step apart outwards from the reference price."""
    shape = ladder(spec)
    orders = []
    for level in range(1, LEVELS + 1):
        for side, sign in (("BUY", -1), ("SELL", 1)):
            price = spec.reference_price + sign * level * shape.step
            orders.append({"saga_id": f"seed-{spec.symbol}-{side}-{level}", "account": MAKER,
                           "instrument": spec.symbol, "side": side, "price": format_amount(spec.quote, price),
                           "qty": format_amount(spec.base, shape.level_qty)})
    return orders


def trade_orders(spec: Instrument) -> list[dict[str, Any]]:
    """mm2's IOC orders that take from the best level, alternating sides, so tape and candles exist
    (30 a side take 30 of the 50 at the top: the book stays LEVELS deep)."""
    shape = ladder(spec)
    out = []
    for n in range(TRADES_PER_INSTRUMENT):
        side = "BUY" if n % 2 == 0 else "SELL"
        reach = spec.reference_price + (1 if side == "BUY" else -1) * 2 * shape.step  # crosses the top level
        out.append({"saga_id": f"seed-trade-{spec.symbol}-{n}", "account": TAKER, "instrument": spec.symbol,
                    "side": side, "price": format_amount(spec.quote, reach), "tif": "IOC",
                    "qty": format_amount(spec.base, shape.trade_qty)})
    return out


async def books_and_trades(nc: Client, console: Console) -> tuple[int, int, int]:
    """(resting orders in place, trades made, refusals) over every instrument."""
    resting = trades = refused = 0

    async def one_instrument(spec: Instrument) -> None:
        nonlocal resting, trades, refused
        for body in book_orders(spec):
            try:
                out = await place(nc, body)
                resting += out["status"] == "completed"
            except QtError as exc:
                refused += 1
                say(console, f"seed {body['saga_id']}: error {exc.code}: {exc.message}")
        for body in trade_orders(spec):
            try:
                out = await place(nc, body)
                trades += len(out["fills"])
            except QtError as exc:
                refused += 1
                say(console, f"seed {body['saga_id']}: error {exc.code}: {exc.message}")

    await asyncio.gather(*(one_instrument(spec) for spec in INSTRUMENTS.values()))
    return resting, trades, refused


async def seed(nc: Client, console: Console, *, books: bool = True) -> None:
    """Fund the demo accounts, then (when clearing runs) seed the books and the tape."""
    deposits = await fund(nc, console)
    say(console, f"seed: {deposits} deposits ensured for {', '.join((*USERS, MAKER, TAKER))} "
                 f"(op_id seed:<account>:<asset>)")
    if not books:
        return
    resting, trades, refused = await books_and_trades(nc, console)
    say(console, f"seed: {resting} resting orders ({LEVELS} levels a side on {len(INSTRUMENTS)} instruments, "
                 f"{MAKER}), {trades} trades ({TAKER} taking), {refused} refused; saga ids seed-...")
