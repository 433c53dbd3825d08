"""A WebSocket client that stops reading is closed with 4408 by the real gateway process (uvicorn, a
real TCP socket whose buffers fill), and a fast client on the same channel gets every frame."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from gateway.ws_hub import SEND_QUEUE
from tests.clearing.platform import Platform
from tests.gateway.harness import GatewayProcess, new_account

#: Frames published (4 KB each, 160 MB): far more than the TCP buffers between the gateway and a client
#: that reads nothing (a few MB on loopback, autotuned) plus its 1,000-frame send queue.
FRAMES = 40 * SEND_QUEUE
PADDING = "x" * 4_000


def ws_url(gateway: GatewayProcess, account: str) -> str:
    return gateway.url.replace("http", "ws", 1) + f"/v1/ws?token={gateway.token(account)}"


async def subscribed(url: str, channel: str, sock: socket.socket | None = None) -> websockets.ClientConnection:
    ws = await websockets.connect(url, open_timeout=10, sock=sock, max_queue=4)
    assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "authenticated"
    await ws.send(json.dumps({"op": "subscribe", "channel": channel}))
    while json.loads(await asyncio.wait_for(ws.recv(), 10)).get("type") != "subscribed":
        pass
    return ws


def small_buffer_socket(gateway: GatewayProcess) -> socket.socket:
    """A client socket with a small receive buffer, so the gateway's sends back up after a few frames."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", gateway.port))
    sock.setblocking(False)
    return sock


@pytest.mark.slow
async def test_a_reader_that_stops_is_closed_4408_and_a_fast_one_gets_every_frame(
    platform: Platform, gateway: GatewayProcess
) -> None:
    channel = "trades.NVDA"
    slow = await subscribed(ws_url(gateway, new_account("slow")), channel, small_buffer_socket(gateway))
    fast = await subscribed(ws_url(gateway, new_account("fast")), channel)
    got: list[int] = []

    async def read_fast() -> None:
        while len(got) < FRAMES:
            frame = json.loads(await fast.recv())
            if frame.get("channel") == channel:
                got.append(frame["data"]["n"])

    reader = asyncio.create_task(read_fast())
    for n in range(FRAMES):  # the slow client reads nothing meanwhile
        await platform.nc.publish(f"md.{channel}", json.dumps({"n": n, "pad": PADDING}).encode())
        if n % 100 == 0:
            await platform.nc.flush()
    await asyncio.wait_for(reader, 60)
    assert got == list(range(FRAMES))

    with pytest.raises(ConnectionClosed) as closed:
        async with asyncio.timeout(60):
            while True:
                await slow.recv()
    assert closed.value.rcvd is not None, f"no close frame: {closed.value!r}"
    assert closed.value.rcvd.code == 4408, closed.value.rcvd
    await fast.close()
