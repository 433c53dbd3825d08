"""Schemathesis over the live `/openapi.json`, as a trader and as an operator: no 5xx, every response as documented.

A real gateway (generous rate limits, so the run exercises routes rather than 429s) in front of real nodes,
market data included; a trader with funds and a few trades, so replies carry decimal strings and fills.
The examples, coverage (boundary and invalid values) and fuzzing phases run with a fixed seed and a bounded
number of fuzzed examples per operation.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import httpx
import pytest

from contracts.gateway import Role
from tests.clearing.platform import Platform, fund
from tests.conftest import wait_for_service
from tests.gateway.conftest import start_gateway
from tests.gateway.harness import GatewayProcess, bearer, new_account, new_key

pytestmark = pytest.mark.slow

#: Fuzzed examples per operation (the coverage phase adds its boundary cases on top).
MAX_EXAMPLES: Final = 50
SEED: Final = 20260409
RUN_TIMEOUT_S: Final = 400
#: No 5xx; status, content type and body as documented; an undocumented method is 405 with a true `Allow`.
CHECKS: Final = ("not_a_server_error", "status_code_conformance", "content_type_conformance",
                 "response_schema_conformance", "unsupported_method", "allow_header_conformance")


@pytest.fixture(scope="module")
async def fuzzed_gateway(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """Market data, and a gateway whose rate limits the run does not reach."""
    await platform.start("market_data", instance="-fuzz", wait=False)
    await wait_for_service(platform.nc, "marketdata", timeout_s=30)
    limits = {name: "1000000" for name in ("QT_RATE_ACCOUNT", "QT_BURST_ACCOUNT", "QT_RATE_IP", "QT_BURST_IP")}
    process = await start_gateway(platform, "gateway-fuzz", **limits)
    try:
        yield process
    finally:
        process.kill()


@dataclass(frozen=True)
class Trader:
    """The trader the run acts as, and its order still resting on the book."""

    account: str
    resting_order: str


@pytest.fixture(scope="module")
async def trader(platform: Platform, fuzzed_gateway: GatewayProcess) -> Trader:
    """A funded trader with a trade and a resting order on BTC-USD."""
    account, maker = new_account("fuzz"), new_account("fuzzmaker")
    await fund(platform.nc, account, USD=100_000_000, BTC=1_000_000_000, ETH=1_000_000_000, AAPL=10_000_000)
    await fund(platform.nc, maker, USD=100_000_000, BTC=1_000_000_000)
    async with httpx.AsyncClient(base_url=fuzzed_gateway.url, timeout=30) as client:
        for who, body in ((maker, {"side": "SELL", "price": "50000.00", "qty": "0.01000000"}),
                          (account, {"side": "BUY", "price": "50000.00", "qty": "0.00500000"}),
                          (account, {"side": "BUY", "price": "40000.00", "qty": "0.00100000"})):
            placed = await client.post("/v1/orders", json={"instrument": "BTC-USD", **body},
                                       headers=bearer(fuzzed_gateway.token(who), new_key()))
            assert placed.status_code == 201, placed.text
    return Trader(account, placed.json()["order_id"])


@pytest.mark.parametrize("role", [Role.TRADER, Role.OPS], ids=["trader", "ops"])
async def test_the_gateway_answers_as_documented(role: Role, fuzzed_gateway: GatewayProcess, trader: Trader,
                                                 tmp_path: Path) -> None:
    # The CLI loads the live document and runs every phase (its pytest loader for a schema known only
    # at run time does not work with pytest 9); its output names each failure with a curl to reproduce it.
    account = trader.account if role is Role.TRADER else "operator"
    config = tmp_path / "schemathesis.toml"
    config.write_text(toml(fuzzed_gateway.token(account, role), trader if role is Role.TRADER else None))
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "--no-color", "run",
        f"{fuzzed_gateway.url}/openapi.json", "--workers", "1", "--report-dir", str(tmp_path),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, cwd=tmp_path,
    )
    try:
        output, _ = await asyncio.wait_for(proc.communicate(), RUN_TIMEOUT_S)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()

    assert proc.returncode == 0, output.decode()


def toml(token: str, own: Trader | None) -> str:
    """The run's configuration: seed, token, bounded examples, the checks; a trader's paths name its own
    account and order (an operator's are generated, so they reach refusals and unknown ids)."""
    lines = [
        f"seed = {SEED}",
        "[headers]", f'Authorization = "Bearer {token}"',
        "[generation]", f"max-examples = {MAX_EXAMPLES}", 'database = "none"',
        "[phases.stateful]", "enabled = false",
        "[checks]", "enabled = false",
        *(line for name in CHECKS for line in (f"[checks.{name}]", "enabled = true")),
    ]
    if own is not None:
        lines += ["[parameters]", f'"path.account" = "{own.account}"', f'"path.order_id" = "{own.resting_order}"',
                  f'"path.saga_id" = "{own.resting_order}"']
    return "\n".join(lines) + "\n"
