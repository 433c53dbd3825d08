"""`/v1/markets`: listed instruments, L2 book (`matching`), tape, candles and ticker (`marketdata`).

Market data is public: no token needed (a presented token must still be valid); the per-IP rate
limit applies.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import Response

from contracts.base import INT64_MAX
from contracts.gateway import InstrumentList, InstrumentView
from contracts.instruments import INSTRUMENTS, Instrument, instrument
from contracts.market_data import CandlesQuery, CandlesReply, Ticker, TickerQuery, TradesQuery, TradesReply
from contracts.matching import BookQuery, BookView
from contracts.money import format_amount
from contracts.subjects import MarketDataEndpoint, MatchingEndpoint, marketdata_subject, matching_subject
from gateway.openapi import doc, schema
from gateway.payload import validate
from gateway.state import Gateway, gateway, json_response

router = APIRouter(prefix="/v1/markets", tags=["markets"])
Gw = Annotated[Gateway, Depends(gateway)]


@router.get("", summary="Listed instruments", **doc(reply=schema(InstrumentList), auth=False))
async def instruments() -> Response:
    """Every listed instrument with its tick, lot step, minimum and fee, as decimal strings."""
    return json_response(InstrumentList(instruments=[_describe(spec) for spec in INSTRUMENTS.values()]).model_dump())


@router.get("/{symbol}", summary="One instrument", **doc(reply=schema(InstrumentView), auth=False))
async def one(symbol: str) -> Response:
    """One listed instrument's trading rules."""
    return json_response(_describe(instrument(symbol)).model_dump())  # unlisted: `unknown_instrument`


@router.get("/{symbol}/book", summary="L2 book", **doc(reply=schema(BookView), auth=False))
async def book(request: Request, symbol: str, gw: Gw, depth: Annotated[int, Query(ge=1, le=500)] = 10) -> Response:
    """Aggregated depth, best first, with the journal sequence it reflects and its checksum."""
    query = validate(BookQuery, {"instrument": symbol, "depth": depth})
    return await gw.query(request, matching_subject(query.instrument, MatchingEndpoint.BOOK), query)


@router.get("/{symbol}/trades", summary="Recent trades", **doc(reply=schema(TradesReply), auth=False))
async def trades(request: Request, symbol: str, gw: Gw, limit: Annotated[int, Query(ge=1, le=1000)] = 100
                 ) -> Response:
    """The tape, newest first."""
    query = validate(TradesQuery, {"instrument": symbol, "limit": limit})
    return await gw.query(request, marketdata_subject(MarketDataEndpoint.TRADES), query)


@router.get("/{symbol}/candles", summary="Candles", **doc(reply=schema(CandlesReply), auth=False))
async def candles(request: Request, symbol: str, gw: Gw, tf: str = "1m",
                  limit: Annotated[int, Query(ge=1, le=1000)] = 100,
                  before: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None,
                  after: Annotated[int | None, Query(ge=0, le=INT64_MAX)] = None
                  ) -> Response:
    """OHLCV candles of a timeframe (`1m`, `5m`, `1h`), oldest first; `before`/`after` in epoch ms."""
    body: dict[str, Any] = {"instrument": symbol, "tf": tf, "limit": limit, "before": before, "after": after}
    query = validate(CandlesQuery, {k: v for k, v in body.items() if v is not None})
    return await gw.query(request, marketdata_subject(MarketDataEndpoint.CANDLES), query)


@router.get("/{symbol}/ticker", summary="Ticker", **doc(reply=schema(Ticker), auth=False))
async def ticker(request: Request, symbol: str, gw: Gw) -> Response:
    """Last price and the last 24 hours: open, high, low, change, volume."""
    return await gw.query(request, marketdata_subject(MarketDataEndpoint.TICKER),
                          validate(TickerQuery, {"instrument": symbol}))


def _describe(spec: Instrument) -> InstrumentView:
    return InstrumentView(
        instrument=spec.symbol, base=spec.base, quote=spec.quote,
        tick=format_amount(spec.quote, spec.tick), lot=format_amount(spec.base, spec.lot),
        min_qty=format_amount(spec.base, spec.min_qty),
        reference_price=format_amount(spec.quote, spec.reference_price), fee_bps=spec.fee_bps,
    )
