"""`subscribed`: one `flush` does not prove the server applied a SUB sent just before it; two do.

What the client writes is recorded by a loopback TCP relay between nats.py and a real nats-server.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import nats
import pytest

from contracts.credentials import nkey_seed_path
from mesh.rpc import subscribed
from tooling.natsserver import NatsServer


@contextlib.asynccontextmanager
async def relay(server: NatsServer, sent: bytearray) -> AsyncIterator[str]:
    """A TCP relay to `server` that appends every byte its client sends to `sent`; yields its URL."""
    tasks: list[asyncio.Task[None]] = []
    writers: list[asyncio.StreamWriter] = []

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, record: bool) -> None:
        while True:
            data = await reader.read(65536)
            if not data:
                return
            if record:
                sent.extend(data)
            writer.write(data)
            await writer.drain()

    async def accept(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        server_r, server_w = await asyncio.open_connection(server.host, server.port)
        writers.extend((client_w, server_w))
        tasks.append(asyncio.create_task(pipe(client_r, server_w, True)))
        tasks.append(asyncio.create_task(pipe(server_r, client_w, False)))

    listener = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = listener.sockets[0].getsockname()[1]
    try:
        yield f"nats://127.0.0.1:{port}"
    finally:
        listener.close()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for writer in writers:
            writer.close()
        await asyncio.gather(*(writer.wait_closed() for writer in writers), return_exceptions=True)
        await listener.wait_closed()


@pytest.mark.parametrize("twice", [False, True])
async def test_a_ping_follows_the_sub_only_on_the_second_flush(nats_server: NatsServer, twice: bool) -> None:
    sent = bytearray()
    async with relay(nats_server, sent) as url:
        nc = await nats.connect(url, nkeys_seed=str(nkey_seed_path(nats_server.data_dir, "ops")))
        try:
            await nc.flush()
            sent.clear()
            await nc.subscribe("qt.test.subscribed")
            if twice:
                await subscribed(nc)
            else:
                await nc.flush()
            await asyncio.sleep(0.1)  # whatever the flusher task writes after the PONG
        finally:
            await nc.close()

    commands = [line.split(b" ")[0] for line in bytes(sent).split(b"\r\n") if line]
    sub = commands.index(b"SUB")
    if twice:
        assert b"PING" in commands[sub + 1:], commands  # a PONG after this PING proves the SUB applied
    else:
        assert b"PING" not in commands[sub + 1:], commands  # nats.py wrote its one PING ahead of the SUB
