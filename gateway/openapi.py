"""OpenAPI documents from the contracts' pydantic models, as the models look on the JSON wire.

Routes read their bodies themselves (bounded, strict JSON, validated by the contract model), so the
schemas are attached here: each model's JSON schema with its money fields as decimal strings and the
fields the gateway fills in (account, op_id, saga_id) removed from request bodies.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from typing import Any, Final, get_args

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel
from starlette.responses import Response
from starlette.routing import compile_path

from contracts.base import ACCOUNT_PATTERN
from contracts.clearing import SAGA_ID_PATTERN, SagaStatus
from contracts.gateway import IDEMPOTENCY_KEY_HEADER, MAX_IDEMPOTENCY_KEY
from contracts.instruments import INSTRUMENTS
from contracts.market_data import Timeframe
from contracts.money import ASSET_SCALES
from gateway.problems import PROBLEM_TYPE

REF: Final = "#/components/schemas/{model}"
DECIMAL: Final = {"type": "string", "pattern": r"^(0|[1-9][0-9]*)(\.[0-9]+)?$", "examples": ["100.25"]}
LEVELS: Final = {"type": "array", "items": {"type": "array", "items": DECIMAL, "minItems": 2, "maxItems": 2},
                 "description": "[price, qty] pairs, best first"}
MAYBE_DECIMAL: Final = {"anyOf": [DECIMAL, {"type": "null"}]}
#: Views that render themselves (`to_wire`) with fields that are not money fields of a MoneyMessage.
WIRE_OVERRIDES: Final[dict[str, dict[str, Any]]] = {
    **dict.fromkeys(("SagaView", "ClientSagaView"), dict.fromkeys(
        ("qty", "filled", "busted_qty", "remaining", "fee", "hold_left"), DECIMAL)),
    "InstrumentView": dict.fromkeys(("tick", "lot", "min_qty", "reference_price"), DECIMAL),
    "BookView": {"bids": LEVELS, "asks": LEVELS},
    "Ticker": {**dict.fromkeys(("last", "open", "high", "low"), MAYBE_DECIMAL),
               "change": {"anyOf": [{**DECIMAL, "pattern": r"^-?(0|[1-9][0-9]*)(\.[0-9]+)?$"}, {"type": "null"}]},
               **dict.fromkeys(("volume", "quote_volume"), DECIMAL)},
    "Candle": {**dict.fromkeys(("open", "high", "low", "close"), MAYBE_DECIMAL),
               **dict.fromkeys(("volume", "quote_volume"), DECIMAL)},
    "TapeTrade": dict.fromkeys(("price", "qty", "quote"), DECIMAL),
    "BalanceReply": {"balances": {"type": "object", "additionalProperties": {
        "type": "object", "properties": {"available": DECIMAL, "held": DECIMAL, "version": {"type": "integer"}}}}},
}
PROBLEM: Final = {
    "type": "object", "title": "Problem", "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"}, "code": {"type": "string", "description": "the contract's error code"},
        "instance": {"type": "string"}, "context": {"type": "object"},
    },
}

KEY_PARAMETER: Final = {
    "name": IDEMPOTENCY_KEY_HEADER, "in": "header", "required": True,
    "schema": {"type": "string", "pattern": rf"^[!-~]{{1,{MAX_IDEMPOTENCY_KEY}}}$"},
    "description": "first request wins; a retry with the same key gets its response (Idempotent-Replayed: true)",
}
#: What the server enforces on fields and parameters of these names, wherever they appear.
INSTRUMENT: Final = {"type": "string", "enum": list(INSTRUMENTS)}
ASSET: Final = {"type": "string", "enum": list(ASSET_SCALES)}
ENFORCED: Final[dict[str, dict[str, Any]]] = {
    "instrument": INSTRUMENT, "asset": ASSET, "account": {"type": "string", "pattern": ACCOUNT_PATTERN},
}
#: ... and on query and path parameters of these names.
ENFORCED_PARAMETERS: Final[dict[str, dict[str, Any]]] = {
    **ENFORCED, "symbol": INSTRUMENT,
    "order_id": {"type": "string", "pattern": SAGA_ID_PATTERN},
    "saga_id": {"type": "string", "pattern": SAGA_ID_PATTERN},
    "tf": {"type": "string", "enum": list(get_args(Timeframe))},
    "status": {"type": "string", "enum": [str(s) for s in SagaStatus]},
}
_IDEMPOTENT: Final = "x-idempotent"
ERROR_DESCRIPTIONS: Final = {
    400: "bad payload or missing Idempotency-Key", 401: "no or invalid bearer token", 403: "not allowed for this role",
    404: "unknown account, order, saga or route", 409: "refused by the current state (funds, duplicate, in flight)",
    413: "body too large",
    421: "the account belongs to another wallet partition than the one asked: the gateway's "
         "QT_WALLET_PARTITIONS differs from the wallets' (a deployment error; nothing was changed)",
    422: "validation failed", 429: "rate limited (Retry-After)",
    503: "a service is unavailable; retry", 504: "a service did not answer in time",
}
_components: dict[str, Any] = {"Problem": PROBLEM}


def schema(model: type[BaseModel], *, name: str | None = None, drop: tuple[str, ...] = ()) -> dict[str, Any]:
    """Register `model` (under `name`, without `drop`) and return a `$ref` to it."""
    title = name or model.__name__
    if title not in _components:
        generated = model.model_json_schema(ref_template=REF)
        for def_name, definition in generated.pop("$defs", {}).items():
            _components.setdefault(def_name, _wire_shape(def_name, definition))
        shaped = _wire_shape(model.__name__, generated)
        for field_name in drop:
            shaped.get("properties", {}).pop(field_name, None)
            if field_name in shaped.get("required", []):
                shaped["required"].remove(field_name)
        shaped["title"] = title
        _components[title] = shaped
    return {"$ref": REF.format(model=title)}


def doc(*, body: dict[str, Any] | None = None, reply: dict[str, Any] | None = None, status: int = 200,
        auth: bool = True, idempotent: bool = False, media_type: str = "application/json",
        replies: dict[int, dict[str, Any]] | None = None, partitioned: bool = False) -> dict[str, Any]:
    """Route decorator arguments documenting the body, the reply, every error status, the bearer token and the key;
    `partitioned`: the route asks the wallet partition of the account in its path (`wrong_partition`, 421)."""
    extra: dict[str, Any] = {}
    if body is not None:
        extra["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    if auth:
        extra["security"] = [{"bearer": []}]
    if idempotent:
        extra[_IDEMPOTENT] = True  # turned into a header parameter once FastAPI listed the path's own
    statuses = _error_statuses(auth, body, idempotent) + ([421] if partitioned else [])
    responses: dict[int | str, Any] = {code: _problem(code) for code in sorted(statuses)}
    if reply is not None:
        responses[status] = {"description": "OK", "content": {media_type: {"schema": reply}}}
    for code, own in (replies or {}).items():  # statuses answered with a body of their own, not a problem
        responses[code] = {"description": ERROR_DESCRIPTIONS.get(code, "see schema"),
                           "content": {"application/json": {"schema": own}}}
    kwargs: dict[str, Any] = {"openapi_extra": extra, "responses": responses, "status_code": status}
    if media_type != "application/json":
        kwargs["response_class"] = Response  # no media type: FastAPI documents only ours, not JSON as well
    return kwargs


def _error_statuses(auth: bool, body: dict[str, Any] | None, idempotent: bool) -> list[int]:
    """The statuses an operation can answer with a problem (`contracts.errors.HTTP_STATUS` and the gateway's)."""
    codes = [400, 404, 422, 429, 503, 504]  # bad payload, unknown resource, validation, rate limit, mesh down
    if auth:
        codes += [401, 403]
    if body is not None or idempotent:
        codes += [409, 413]  # business refusals and in-flight duplicates; an oversize body
    return sorted(codes)


def _problem(status: int) -> dict[str, Any]:
    return {"description": ERROR_DESCRIPTIONS[status],
            "content": {PROBLEM_TYPE: {"schema": {"$ref": REF.format(model="Problem")}}}}


def install(app: FastAPI) -> None:
    """Serve the generated document with the registered contract schemas and the bearer scheme."""

    def build() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(title=app.title, version=app.version, description=app.description,
                                   routes=app.routes)
            components = document.setdefault("components", {})
            components.setdefault("schemas", {}).update(copy.deepcopy(_components))
            components["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}}
            for operations in document.get("paths", {}).values():
                for operation in operations.values():
                    for parameter in operation.get("parameters", []):
                        if rule := ENFORCED_PARAMETERS.get(parameter["name"]):
                            parameter["schema"] = _enforce(parameter["schema"], rule)
                    if operation.pop(_IDEMPOTENT, False):
                        operation.setdefault("parameters", []).append(KEY_PARAMETER)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = build  # type: ignore[method-assign]


def _wire_shape(name: str, definition: dict[str, Any]) -> dict[str, Any]:
    """A model's schema as JSON clients see it: money fields are decimal strings."""
    model = _contract_models().get(name)
    shaped = copy.deepcopy(definition)
    props = shaped.get("properties", {})
    money: set[str] = set()
    for attr in ("__money_fields__", "__price_fields__", "__qty_fields__"):
        money.update(getattr(model, attr, ()))
    for field_name in money & props.keys():
        props[field_name] = _integer_to_decimal(props[field_name])
    for field_name, override in WIRE_OVERRIDES.get(name, {}).items():
        props[field_name] = override
    for field_name in ENFORCED.keys() & props.keys():
        props[field_name] = _enforce(props[field_name], ENFORCED[field_name])
    return shaped


def _enforce(node: dict[str, Any], rule: dict[str, Any]) -> dict[str, Any]:
    """`node` (a string, or a string-or-null) narrowed to what the server accepts; other shapes unchanged."""
    if node.get("type") == "string":
        return {**{k: v for k, v in node.items() if k not in ("pattern", "maxLength", "minLength")}, **rule}
    if "anyOf" in node:
        return {**node, "anyOf": [_enforce(branch, rule) for branch in node["anyOf"]]}
    return node


@dataclass(frozen=True)
class DocumentedPath:
    """One path of the document: its template, the regex routing matches it with, its methods."""

    template: str
    pattern: re.Pattern[str]
    methods: tuple[str, ...]


def documented_path(app: FastAPI, path: str) -> DocumentedPath | None:
    """The documented path template `path` matches (for requests answered before or without routing)."""
    paths: list[DocumentedPath] | None = getattr(app.state, "documented_paths", None)
    if paths is None:
        paths = app.state.documented_paths = [
            DocumentedPath(template, compile_path(template)[0], tuple(sorted(m.upper() for m in operations)))
            for template, operations in app.openapi().get("paths", {}).items()
        ]
    return next((p for p in paths if p.pattern.match(path)), None)


def _integer_to_decimal(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("type") == "integer":
            return {**{k: v for k, v in node.items() if k != "type"}, **DECIMAL}
        return {k: _integer_to_decimal(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_integer_to_decimal(v) for v in node]
    return node


def _contract_models() -> dict[str, type[BaseModel]]:
    from contracts import clearing, dlq, matching, orders, wallet

    found: dict[str, type[BaseModel]] = {}
    for module in (wallet, matching, clearing, orders, dlq):
        for value in vars(module).values():
            if isinstance(value, type) and issubclass(value, BaseModel):
                found.setdefault(value.__name__, value)
    return found
