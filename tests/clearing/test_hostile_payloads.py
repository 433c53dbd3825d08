"""Hostile payloads on every endpoint of every node (wallet, matching, clearing, market data): deep nesting
and msgpack extension types are `bad_payload`, never `internal`; out-of-range money is `amount_out_of_range`."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import msgpack
import pytest

from contracts.money import MAX_UNITS
from contracts.subjects import MARKETDATA_SERVICE
from mesh.rpc import QT_ERROR_HEADER, discover
from tests.clearing.platform import Platform, balances, clearing, fund
from tests.clearing.test_place_order import acct
from tests.conftest import wait_for_service

#: Endpoints that take no request body (they answer whatever is sent).
BODILESS = {"metrics", "breakers"}
HOSTILE = {
    "json nested 5000 deep": b'{"a":' * 5_000 + b"1" + b"}" * 5_000,
    "json arrays 5000 deep": b'{"a":' + b"[" * 5_000 + b"]" * 5_000 + b"}",
    "msgpack nested 1000 deep": b"\x81\xa1a" * 1_000 + b"\x01",  # within msgpack's own stack limit
    "msgpack nested 50000 deep": b"\x81\xa1a" * 20_000 + b"\x01",
    "msgpack ext type": msgpack.packb({"account": msgpack.ExtType(7, b"x" * 8)}),
    "msgpack timestamp": msgpack.packb({"account": "a", "after": msgpack.Timestamp(1)}),
}


@pytest.fixture(scope="module")
async def endpoints(shared: Platform) -> AsyncIterator[list[str]]:
    """Every request subject the four nodes serve, as micro discovery lists them."""
    shared.procs.append(await shared.start("market_data", wait=False))
    await wait_for_service(shared.nc, MARKETDATA_SERVICE, timeout_s=30)
    subjects = sorted({ep["subject"] for instance in await discover(shared.nc, wait_s=1.0)
                       for ep in (instance.get("info") or {}).get("endpoints", [])
                       if ep["name"] not in BODILESS})
    yield subjects


async def test_every_node_is_discovered(endpoints: list[str]) -> None:
    services = {subject.split(".")[0] for subject in endpoints}
    assert services == {"wallet", "matching", "clearing", MARKETDATA_SERVICE}, endpoints


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_payloads_are_bad_payload_on_every_endpoint(
    shared: Platform, endpoints: list[str], case: str
) -> None:
    codes = {}
    for subject in endpoints:
        reply = await shared.nc.request(subject, HOSTILE[case], timeout=10)
        codes[subject] = (reply.headers or {}).get(QT_ERROR_HEADER)
    assert codes == dict.fromkeys(endpoints, "bad_payload")


#: (subject, msgpack body in integer units, the same in JSON as decimal strings); the account is added.
OUT_OF_RANGE = [
    ("wallet.p0.deposit", {"asset": "USD", "amount": MAX_UNITS + 1, "op_id": "x"},
     {"asset": "USD", "amount": "10000000000000.01", "op_id": "x"}),
    ("matching.AAPL.submit", {"instrument": "AAPL", "side": "BUY", "price": MAX_UNITS, "qty": 10_000, "order_id": "x"},
     {"instrument": "AAPL", "side": "BUY", "price": "10000000000000.00", "qty": "1.0000", "order_id": "x"}),
    ("clearing.place_order", {"instrument": "AAPL", "side": "BUY", "price": 10**13, "qty": 10**6},
     {"instrument": "AAPL", "side": "BUY", "price": "100000000000.00", "qty": "100.0000"}),
]


@pytest.mark.parametrize(("subject", "packed", "decimal"), OUT_OF_RANGE, ids=["wallet", "matching", "clearing"])
@pytest.mark.parametrize("wire", ["json", "msgpack"])
async def test_out_of_range_money_is_refused_on_both_wires_and_changes_nothing(
    shared: Platform, subject: str, packed: dict[str, object], decimal: dict[str, object], wire: str
) -> None:
    nc = shared.nc
    account = acct("range")
    await fund(nc, account, USD=1_000)
    body = {"account": account, **(decimal if wire == "json" else packed)}

    reply = await nc.request(subject, json.dumps(body).encode() if wire == "json" else msgpack.packb(body),
                             timeout=10)

    assert (reply.headers or {}).get(QT_ERROR_HEADER) == "amount_out_of_range", reply.data
    assert await balances(nc, account) == {"USD": (1_000, 0)}
    assert (await clearing(nc, "saga_list", account=account))["sagas"] == []
