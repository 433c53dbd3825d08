"""The `marketdata` micro service: ticker, candles and tape from TRADES, and the live `md.*` feeds.

Endpoints first, then the live feed, then start/stop.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time

from nats.aio.client import Client

from contracts.instruments import INSTRUMENTS
from contracts.market_data import CandlesQuery, CandlesReply, Ticker, TickerQuery, TradesQuery, TradesReply
from contracts.subjects import MARKETDATA_SERVICE, TRADES_STREAM, MarketDataEndpoint
from mesh.jetstream import ensure_named
from nodes.market_data.state import Change, MarketState
from nodes.market_data.tail import TradesTail
from nodes.market_data.views import candles_view, live_messages, ticker_view, trades_view
from nodes.runtime.config import NodeConfig
from nodes.runtime.connect import connect
from nodes.runtime.lifecycle import disconnect, until_stopped
from nodes.runtime.log import kv
from nodes.runtime.metrics import NodeMetrics
from nodes.runtime.service import NodeService

log = logging.getLogger(__name__)
VERSION = "0.1.0"


def now_ms() -> int:
    """Wall-clock epoch milliseconds: the end of the ticker's 24h window."""
    return time.time_ns() // 1_000_000


class MarketDataNode:
    """The endpoints, answered from the in-memory state (one event loop: no locks)."""

    def __init__(self, state: MarketState) -> None:
        self.state = state

    def register(self, service: NodeService) -> None:
        """Bind the market data endpoints."""
        service.route(MarketDataEndpoint.TICKER, TickerQuery)(self.ticker)
        service.route(MarketDataEndpoint.CANDLES, CandlesQuery)(self.candles)
        service.route(MarketDataEndpoint.TRADES, TradesQuery)(self.trades)

    async def ticker(self, query: TickerQuery) -> Ticker:
        """Last price and 24h stats."""
        return ticker_view(self.state.instruments[query.instrument], now_ms())

    async def candles(self, query: CandlesQuery) -> CandlesReply:
        """Candles of one timeframe, oldest first."""
        return candles_view(self.state.instruments[query.instrument], query)

    async def trades(self, query: TradesQuery) -> TradesReply:
        """The tape, newest first."""
        return trades_view(self.state.instruments[query.instrument], query.limit)


class LiveFeed:
    """Publishes each change on `md.trades.*`, `md.candles.*.*` and `md.ticker.*` (core NATS, JSON)."""

    def __init__(self, nc: Client, state: MarketState) -> None:
        self.nc = nc
        self.state = state

    async def publish(self, change: Change, symbol: str) -> None:
        """Send what `change` touched; a message lost here shows up as a gap in the client's `seq`."""
        try:
            for subject, payload in live_messages(self.state.instruments[symbol], change, now_ms()):
                await self.nc.publish(subject, payload)
        except Exception as exc:  # NATS away: clients resync from the endpoints when they see the gap
            log.warning("live publish failed", extra=kv(instrument=symbol, seq=change.seq, error=repr(exc)))


async def serve(config: NodeConfig, stop: asyncio.Event) -> None:
    """Rebuild from TRADES, then serve the endpoints and the live feeds until `stop`."""
    nc = await connect(config, name=f"{MARKETDATA_SERVICE}-{os.getpid()}")
    js = nc.jetstream()
    await ensure_named(js, streams=(TRADES_STREAM,), buckets=())
    state = MarketState(INSTRUMENTS)
    tail = TradesTail(js, state, LiveFeed(nc, state).publish)
    service = NodeService(nc, name=MARKETDATA_SERVICE, version=VERSION, metrics=NodeMetrics(MARKETDATA_SERVICE),
                          description="ticker, candles and tape from TRADES; live md.* feeds")
    MarketDataNode(state).register(service)
    tail_task = asyncio.create_task(tail.run(), name="trades-tail")
    ready_task = asyncio.create_task(tail.ready.wait())
    # The service answers PING only once the state is rebuilt: `qt up` and clients see it ready then.
    await until_stopped(stop, (tail_task, ready_task))
    if tail.ready.is_set() and not tail_task.done():
        await service.start()
        log.info("marketdata serving", extra=kv(applied_seq=state.applied_seq, skipped=tail.skipped))
        await until_stopped(stop, (tail_task,))
    failure = tail_task.exception() if tail_task.done() and not tail_task.cancelled() else None
    if failure is not None:
        log.error("marketdata stopping", extra=kv(reason=repr(failure)))
    await service.stop()
    for task in (tail_task, ready_task):
        task.cancel()
    await asyncio.gather(tail_task, ready_task, return_exceptions=True)
    await disconnect(nc)
    if failure is not None:
        raise failure
