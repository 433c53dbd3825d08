"""What a client sees of its orders over HTTP and WebSocket: its own side of every fill, never the
counterparty's account, order id or remaining size (`contracts.orders.client_fill` builds each one).

Nodes answer the gateway with full detail (ops read that over NATS); these functions cut it down at
the edge, so every HTTP reply and every `orders` frame goes through the same fill view.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from contracts.base import dump
from contracts.codec import Wire
from contracts.instruments import instrument
from contracts.matching import Fill
from contracts.money import format_amount
from contracts.orders import client_fill

#: Fields of an EXEC report that are the order's own, in the instrument's quote or base scale.
_QUOTE_FIELDS = ("price",)
_BASE_FIELDS = ("qty", "remaining")


def client_fills(fills: list[dict[str, Any]], order_id: str, busts: frozenset[str] = frozenset()) -> list[Any]:
    """JSON fills (decimal strings, as a node answers the gateway) as the owner of `order_id` sees them."""
    out = []
    for raw in fills:
        fill = Fill.model_validate(raw, context={"wire": Wire.JSON})
        mine = client_fill(fill.model_dump(mode="python"), order_id, busted=fill.trade_id in busts)
        out.append(dump(mine, Wire.JSON))
    return out


def client_saga(body: dict[str, Any]) -> dict[str, Any]:
    """A saga view (place-order reply, order, list entry, saga detail) with only the order's own side."""
    out = dict(body)
    out["fills"] = client_fills(body.get("fills", []), body["order_id"], frozenset(body.get("busts", [])))
    for name in ("steps", "compensations"):
        if out.get(name):
            out[name] = [_own_step(step) for step in out[name]]
    return out


def client_saga_list(body: dict[str, Any]) -> dict[str, Any]:
    """A page of saga views, each cut down by `client_saga`."""
    return {**body, "sagas": [client_saga(s) for s in body.get("sagas", [])]}


def client_order(body: dict[str, Any]) -> dict[str, Any]:
    """An engine order record (e.g. a cancel's answer) with only its own side of each fill."""
    return {**body, "fills": client_fills(body.get("fills", []), body["order_id"])}


def client_exec(report: Mapping[str, Any], account: str) -> dict[str, Any] | None:
    """An EXEC report (integer units) as `account` sees it on its `orders` channel; None when it is
    not the account's. A fill shows only the account's side; other reports are the owner's already."""
    if report.get("kind") == "fill":
        if account == report.get("taker_account"):
            order_id = report["taker_order_id"]
        elif account == report.get("maker_account"):
            order_id = report["maker_order_id"]
        else:
            return None
        return {"kind": "fill", "orders_seq": report.get("orders_seq"),
                **dump(client_fill(report, order_id), Wire.JSON)}
    if report.get("account") != account:
        return None
    spec = instrument(report["instrument"])
    out = dict(report)
    for names, asset in ((_QUOTE_FIELDS, spec.quote), (_BASE_FIELDS, spec.base)):
        for key in names:
            if isinstance(out.get(key), int):
                out[key] = format_amount(asset, out[key])
    return out


def _own_step(step: dict[str, Any]) -> dict[str, Any]:
    """A step whose result carries the engine's order record (cancel_order) keeps only its summary."""
    result = step.get("result")
    if not isinstance(result, dict) or not isinstance(result.get("order"), dict):
        return step
    order = result["order"]
    summary = {k: order.get(k) for k in ("order_id", "status", "filled", "remaining")}
    return {**step, "result": {**result, "order": summary}}
