"""Helpers for market data tests: TRADES published exactly as clearing does, a node process, a JSON client."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from nats.aio.client import Client
from nats.js import JetStreamContext
from nats.js.api import PubAck

from contracts.clearing import TradeEvent
from contracts.codec import Wire
from contracts.instruments import instrument
from contracts.subjects import MARKETDATA_SERVICE, TRADES_STREAM, marketdata_subject, trades_subject
from mesh.rpc import call
from nodes.market_data.candles import bucket
from tests.conftest import wait_for_service
from tests.polling import eventually
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer


def minute_ago_ns(minutes: int = 2) -> int:
    """Start of the minute `minutes` ago, in ns: trades placed from there fall in known buckets."""
    return bucket(time.time_ns() // 1_000_000 - minutes * 60_000, "1m") * 1_000_000


def trade_event(kind: str, trade_id: str, symbol: str, price: int, qty: int, ts_ns: int,
                side: str = "BUY") -> TradeEvent:
    """A TradeEvent as clearing builds it (integer units; fees are irrelevant to market data)."""
    quote = instrument(symbol).notional(price, qty)[0]
    return TradeEvent(kind=kind, trade_id=trade_id, instrument=symbol, price=price, qty=qty, quote=quote,
                      maker_fee=0, taker_fee=0, maker_order_id=f"m-{trade_id}", taker_order_id=f"t-{trade_id}",
                      maker_account="maker", taker_account="taker", taker_side=side, saga_id=f"s-{trade_id}",
                      ts_ns=ts_ns)


async def publish(js: JetStreamContext, kind: str, trade_id: str, symbol: str, price: int, qty: int, ts_ns: int,
                  side: str = "BUY", msg_id: str | None = None) -> PubAck:
    """Publish to TRADES like clearing: msgpack body, msg-id = trade id or `bust:<trade id>`."""
    event = trade_event(kind, trade_id, symbol, price, qty, ts_ns, side)
    default_id = trade_id if kind == "trade" else f"bust:{trade_id}"
    return await js.publish(trades_subject(symbol), msgpack.packb(event.model_dump(mode="python")),
                            headers={"Nats-Msg-Id": msg_id or default_id}, stream=TRADES_STREAM)


async def md(nc: Client, endpoint: str, wire: Wire = Wire.JSON, **body: Any) -> dict[str, Any]:
    """Call `marketdata.<endpoint>` (JSON wire unless told)."""
    return await call(nc, marketdata_subject(endpoint), body, wire=wire, timeout=10)


async def wait_seq(nc: Client, symbol: str, seq: int, timeout_s: float = 20.0) -> dict[str, Any]:
    """Poll the ticker until it reflects TRADES sequence `seq` (the node folds asynchronously)."""
    return await eventually(lambda: md(nc, "ticker", instrument=symbol), lambda ticker: ticker["seq"] >= seq,
                            timeout_s=timeout_s, what=f"{symbol} ticker at seq {seq}")


async def picture(nc: Client, symbol: str) -> dict[str, Any]:
    """Everything the endpoints say about an instrument (JSON wire)."""
    out = {"ticker": await md(nc, "ticker", instrument=symbol),
           "trades": await md(nc, "trades", instrument=symbol, limit=1000)}
    for tf in ("1m", "5m", "1h"):
        out[tf] = await md(nc, "candles", instrument=symbol, tf=tf, limit=1000)
    return out


@dataclass
class Market:
    """A fresh nats-server with an empty TRADES stream, and the market data processes of one test."""

    server: NatsServer
    nc: Client
    js: JetStreamContext
    root: Path
    procs: list[NodeProcess] = field(default_factory=list)

    def spawn(self) -> NodeProcess:
        """Start `python -m nodes.market_data` without waiting for it."""
        proc = NodeProcess("nodes.market_data", self.server.url, self.root / "market_data",
                           self.server.data_dir).start()
        self.procs.append(proc)
        return proc

    async def start(self) -> NodeProcess:
        """Start the node and wait until it has rebuilt and serves."""
        proc = self.spawn()
        await wait_for_service(self.nc, MARKETDATA_SERVICE, timeout_s=30)
        return proc
