"""A multi-worker gateway seen from outside: its worker PIDs, and client sockets placed on a chosen worker.

Every worker accepts on one shared socket, so which worker serves a connection is the kernel's choice. A
test that must prove a limit is shared opens TCP connections until one is owned by the worker it wants
(the server side's inode in `/proc/net/tcp`, found among that worker's open files), then speaks HTTP or
WebSocket over it. Each test uses its own loopback source address (127.0.0.x), so per-IP limits of one
test never spend another's.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import struct
from pathlib import Path
from typing import Any

#: Seconds spent trying to land a connection on a given worker (a restarted one may still be starting).
PLACE_TIMEOUT_S = 60.0


def children(pid: int) -> list[int]:
    """The live child processes of `pid` (the workers of a gateway supervisor)."""
    found: list[int] = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError):
                found += [int(child) for child in Path(f"/proc/{pid}/task/{task}/children").read_text().split()]
    return found


def alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def wait_workers(master: int, count: int, *, exclude: frozenset[int] = frozenset(),
                       timeout_s: float = 60.0) -> list[int]:
    """The supervisor's `count` workers once they all run (none of them in `exclude`)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        pids = [pid for pid in children(master) if alive(pid)]
        if len(pids) == count and not set(pids) & exclude:
            return sorted(pids)
        await asyncio.sleep(0.05)
    raise TimeoutError(f"supervisor {master} did not run {count} workers: {children(master)}")


def _server_inode(port: int, client: tuple[str, int]) -> int:
    """The inode of the server side of the connection from `client` to `port` (0 until a worker accepted it)."""
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = (_address(fields[1]), _address(fields[2]))
        if local[1] == port and remote == client:
            return int(fields[9])
    return 0


def _address(text: str) -> tuple[str, int]:
    host, port = text.split(":")
    return socket.inet_ntoa(struct.pack("<I", int(host, 16))), int(port, 16)


def _owner(inode: int, pids: list[int]) -> int | None:
    target = f"socket:[{inode}]"
    for pid in pids:
        with contextlib.suppress(OSError):
            for fd in os.listdir(f"/proc/{pid}/fd"):
                with contextlib.suppress(OSError):
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                        return pid
    return None


async def owner_of(sock: socket.socket, port: int, pids: list[int], timeout_s: float = 30.0) -> int:
    """The worker that accepted `sock`'s connection."""
    client = sock.getsockname()
    deadline = asyncio.get_running_loop().time() + timeout_s
    while asyncio.get_running_loop().time() < deadline:
        inode = _server_inode(port, client)
        found = _owner(inode, pids) if inode else None
        if found is not None:
            return found
        await asyncio.sleep(0.01)
    raise TimeoutError(f"no worker of {pids} accepted the connection from {client}")


async def connection_on(worker: int, port: int, source: str, pids: list[int]) -> socket.socket:
    """A connected, non-blocking socket from `source` to the gateway, accepted by `worker`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + PLACE_TIMEOUT_S
    while loop.time() < deadline:
        sock = socket.socket()
        sock.setblocking(False)
        sock.bind((source, 0))
        await loop.sock_connect(sock, ("127.0.0.1", port))
        if await owner_of(sock, port, pids) == worker:
            return sock
        sock.close()  # never spoke HTTP: it spends no rate-limit token and holds no WebSocket place
        await asyncio.sleep(0.02)
    raise AssertionError(f"no connection landed on worker {worker} within {PLACE_TIMEOUT_S}s")


class RawHttp:
    """HTTP/1.1 keep-alive over one socket we placed (httpx cannot be given a socket)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def over(cls, sock: socket.socket) -> RawHttp:
        """Speak HTTP over `sock`."""
        reader, writer = await asyncio.open_connection(sock=sock)
        return cls(reader, writer)

    async def get(self, path: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:
        """GET `path`: the status, the headers (lower-case names) and the JSON body (or the text)."""
        lines = [f"GET {path} HTTP/1.1", "Host: gateway", *(f"{k}: {v}" for k, v in (headers or {}).items())]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()
        head = (await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), 30)).decode("latin-1").split("\r\n")
        status = int(head[0].split()[1])
        fields = dict(line.split(": ", 1) for line in head[1:] if line)
        found = {k.lower(): v for k, v in fields.items()}
        body = await asyncio.wait_for(self.reader.readexactly(int(found.get("content-length", "0"))), 30)
        with contextlib.suppress(ValueError):
            return status, found, json.loads(body)
        return status, found, body.decode()

    async def close(self) -> None:
        """Close the connection."""
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()
