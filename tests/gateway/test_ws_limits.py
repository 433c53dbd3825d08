"""WebSocket abuse: a socket flood from one account and one IP is refused at the caps, an oversize
frame is refused by the protocol before it is buffered, and the gateway's memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import websockets
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.clearing.platform import Platform
from tests.gateway.conftest import start_gateway
from tests.gateway.harness import GatewayProcess, new_account

PER_ACCOUNT = 4
PER_IP = 12
#: Sockets the flood tries to open from one IP: far past the cap, still seconds of work.
FLOOD = 60
#: What the hostile review sent (15 MB frames), on several sockets at once.
BIG_FRAME = "x" * 15_000_000
BIG_SENDERS = 12
#: Peak RSS allowed to the gateway under the flood: ~70 MB with the caps, 300-450 MB without them.
RSS_BOUND_KB = 200 * 1024


@pytest.fixture(scope="module")
async def capped(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """A gateway with small caps, so the flood needs only dozens of sockets."""
    process = await start_gateway(platform, "gateway-wscap", QT_WS_MAX_PER_ACCOUNT=str(PER_ACCOUNT),
                                  QT_WS_MAX_PER_IP=str(PER_IP))
    try:
        yield process
    finally:
        process.kill()


def ws_url(gateway: GatewayProcess, account: str) -> str:
    return gateway.url.replace("http", "ws", 1) + f"/v1/ws?token={gateway.token(account)}"


def peak_rss_kb(pid: int) -> int:
    """The process's peak resident set (VmHWM), which a transient buffer cannot hide from."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM in /proc status")


async def authenticated(url: str) -> ClientConnection:
    ws = await websockets.connect(url, open_timeout=10, max_size=None)
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "authenticated"
    return ws


async def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_a_socket_flood_is_refused_at_the_caps_and_public_reads_still_answer(capped: GatewayProcess) -> None:
    account = new_account("flood")
    held = [await authenticated(ws_url(capped, account)) for _ in range(PER_ACCOUNT)]
    try:
        with pytest.raises(InvalidStatus) as over:  # its token is in the URL: refused before the upgrade
            await websockets.connect(ws_url(capped, account), open_timeout=10)
        assert over.value.response.status_code == 429
        assert json.loads(over.value.response.body)["code"] == "rate_limited"
        # with the token in the first frame the account is known only after the upgrade: closed 4429
        late = await websockets.connect(capped.url.replace("http", "ws", 1) + "/v1/ws", open_timeout=10)
        await late.send(json.dumps({"op": "auth", "token": capped.token(account)}))
        assert await close_code(late) == 4429, "a connection past the per-account cap must close with 4429"
        held += [await authenticated(ws_url(capped, new_account("flood"))) for _ in range(PER_IP - PER_ACCOUNT)]
        refused = 0
        for _ in range(FLOOD - PER_IP):
            with pytest.raises(InvalidStatus) as denied:
                await websockets.connect(ws_url(capped, new_account("flood")), open_timeout=10)
            assert denied.value.response.status_code == 429
            assert json.loads(denied.value.response.body)["code"] == "rate_limited"
            refused += 1
        assert refused == FLOOD - PER_IP
        async with httpx.AsyncClient(base_url=capped.url, timeout=30.0) as client:
            assert (await client.get("/v1/markets/AAPL/book", params={"depth": 5})).status_code == 200
    finally:
        for ws in held:
            await ws.close()
    # every slot was given back: the same account connects again
    again = await authenticated(ws_url(capped, account))
    await again.close()


async def test_oversize_frames_are_refused_by_the_protocol_and_memory_stays_bounded(
    capped: GatewayProcess,
) -> None:
    senders = [await authenticated(ws_url(capped, new_account("big"))) for _ in range(BIG_SENDERS)]

    async def send_big(ws: ClientConnection) -> int | None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(BIG_FRAME)
        return await close_code(ws)

    codes = await asyncio.gather(*(send_big(ws) for ws in senders))
    assert codes == [1009] * BIG_SENDERS, "a frame past ws_max_size must close with 1009 (message too big)"
    async with httpx.AsyncClient(base_url=capped.url, timeout=30.0) as client:
        assert (await client.get("/health")).status_code == 200
    assert capped.proc is not None
    peak = peak_rss_kb(capped.proc.pid)
    assert peak < RSS_BOUND_KB, f"gateway peaked at {peak / 1024:.0f} MB under 15 MB frames"
    # a frame just past the application's 4 KiB check but under the protocol cap is an error, not a close
    async with websockets.connect(ws_url(capped, new_account("big")), open_timeout=10) as ws:
        assert json.loads(await ws.recv())["type"] == "authenticated"
        await ws.send("x" * 5000)
        assert json.loads(await asyncio.wait_for(ws.recv(), 10))["code"] == "payload_too_large"


async def test_a_socket_sending_frames_past_its_rate_is_closed_4429(gateway: GatewayProcess) -> None:
    ws = await authenticated(ws_url(gateway, new_account("chatty")))
    with pytest.raises(ConnectionClosed) as closed:
        # far past the burst (50) at any speed this machine sends; the close ends the loop early
        for _ in range(5_000):
            await ws.send(json.dumps({"op": "ping"}))
        while True:
            await asyncio.wait_for(ws.recv(), 10)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4429
    assert "too many messages" in closed.value.rcvd.reason
