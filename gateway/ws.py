"""`/v1/ws`: authenticate, then subscribe/unsubscribe to channels; heartbeats; clean close codes.

Protocol (JSON text frames). Client: `{"op": "auth", "token": ...}` first unless `?token=` was
given, then `{"op": "subscribe"|"unsubscribe", "channel": "book.AAPL"}` or `{"op": "ping"}`.
Server: `{"type": "subscribed"|"unsubscribed"|"error"|"heartbeat"|"pong", ...}` and channel data
(`snapshot`/`update` for books, with `seq`, `prev_seq` and the top-10 CRC32 `checksum`). A client that
reads slower than a book changes gets a new `snapshot` (conflation) instead of a backlog of updates.
Refused before the upgrade, with problem+json: an address over its socket cap (429) and, when the token is
in `?token=`, a bad token (401) or an account over its cap (429); with the token in the first frame the
last two are close codes 4401 and 4429 after it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol

from starlette.responses import Response
from starlette.websockets import WebSocket, WebSocketDisconnect

from contracts.gateway import GatewayCode
from gateway.problems import PROBLEM_TYPE, Problem
from gateway.ratelimit import TokenBucket
from gateway.tokens import Principal
from gateway.ws_hub import (
    CLOSE_BAD_REQUEST,
    CLOSE_FLOOD,
    CLOSE_SLOW,
    CLOSE_UNAUTHORIZED,
    Hub,
    SlowConsumer,
    Subscriber,
)

AUTH_WAIT_S: Final = 5.0
HEARTBEAT_S: Final = 15.0
#: A connection whose one frame has not left for this long (its reader stopped) is closed with 4408.
SEND_STALL_S: Final = 2 * HEARTBEAT_S
MAX_FRAME: Final = 4096
#: uvicorn's `ws_max_size`: the protocol refuses (close 1009) any message above it before buffering it
#: whole. 4,096 characters are at most 16 KiB of UTF-8, so every frame `MAX_FRAME` allows still passes.
WS_MAX_SIZE: Final = 4 * MAX_FRAME
MAX_BAD_FRAMES: Final = 5
#: Inbound frames per second a connection may send (token bucket), and the burst above it.
RATE: Final = 20.0
BURST: Final = 50.0


Verify = Callable[[str], Principal]


class Counts(Protocol):
    """Open connections by key: `LocalCounts` in one process, `gateway.shared.SharedCounts` across workers."""

    def take(self, key: str, limit: int) -> bool:
        """Count one more connection of `key`; False (nothing counted) when it already has `limit`."""
        ...

    def give_back(self, key: str) -> None:
        """A connection of `key` ended."""
        ...


class LocalCounts:
    """`Counts` of one process."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()

    def take(self, key: str, limit: int) -> bool:
        """Count one more connection of `key` unless it has `limit`."""
        if self.counts[key] >= limit:
            return False
        self.counts[key] += 1
        return True

    def give_back(self, key: str) -> None:
        """A connection of `key` ended."""
        self.counts[key] -= 1
        if self.counts[key] <= 0:
            del self.counts[key]


class Caps:
    """Open connections per client IP and per account, each under its limit (a socket costs memory
    and a share of the event loop, so one client must not hold thousands)."""

    def __init__(self, per_account: int, per_ip: int, accounts: Counts | None = None,
                 ips: Counts | None = None) -> None:
        self.per_account = per_account
        self.per_ip = per_ip
        self.accounts = accounts or LocalCounts()
        self.ips = ips or LocalCounts()

    def take_ip(self, ip: str) -> bool:
        """Count a connection from `ip`; False (nothing counted) when it already has `per_ip`."""
        return self.ips.take(ip, self.per_ip)

    def give_back_ip(self, ip: str) -> None:
        """A connection from `ip` ended."""
        self.ips.give_back(ip)

    def take_account(self, account: str) -> bool:
        """Count a session of `account`; False (nothing counted) when it already has `per_account`."""
        return self.accounts.take(account, self.per_account)

    def give_back_account(self, account: str) -> None:
        """A session of `account` ended."""
        self.accounts.give_back(account)


def ws_endpoint(hub_of: Callable[[], Hub], verify: Verify, caps: Caps) -> Callable[[WebSocket], Awaitable[None]]:
    """The `/v1/ws` handler over a hub, a token verifier (raising on a bad token) and connection caps."""

    async def endpoint(ws: WebSocket) -> None:
        ip = ws.client.host if ws.client else "unknown"
        if not caps.take_ip(ip):  # refused before the upgrade: no socket state is ever allocated
            await _refuse(ws, Problem(GatewayCode.RATE_LIMITED,
                                      f"too many WebSocket connections from this address: at most {caps.per_ip}"))
            return
        try:
            upgraded = ws.query_params.get("token") is None
            if not upgraded:  # the token is known before the upgrade: refused before it too
                principal = _verified(ws.query_params["token"], verify)
                if principal is None:
                    await _refuse(ws, _unauthorized())
                    return
                if not caps.take_account(principal.account):
                    await _refuse(ws, _over_account_cap(caps))
                    return
            else:
                await ws.accept()
                principal = await _authenticate(ws, verify)
                if principal is None:
                    return
                if not caps.take_account(principal.account):
                    with contextlib.suppress(Exception):
                        await ws.close(CLOSE_FLOOD, _over_account_cap(caps).message)
                    return
            try:  # the account's socket is counted from here: given back however this ends
                if not upgraded:
                    await ws.accept()
                await ws.send_text(json.dumps({"type": "authenticated", "account": principal.account}))
                await Session(ws, hub_of(), Subscriber(principal.account)).run()
            finally:
                caps.give_back_account(principal.account)
        finally:
            caps.give_back_ip(ip)

    return endpoint


def _over_account_cap(caps: Caps) -> Problem:
    return Problem(GatewayCode.RATE_LIMITED, f"too many connections: at most {caps.per_account} per account")


def _unauthorized() -> Problem:
    return Problem(GatewayCode.UNAUTHORIZED, "unauthorized: a valid token is required",
                   headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})


def _verified(token: str, verify: Verify) -> Principal | None:
    try:
        return verify(token) if token else None
    except Exception:
        return None


async def _refuse(ws: WebSocket, problem: Problem) -> None:
    """The problem+json (429, 401) instead of the upgrade; a close with its WebSocket code where the server
    cannot answer the handshake with a response."""
    if "websocket.http.response" not in (ws.scope.get("extensions") or {}):
        await ws.close(CLOSE_FLOOD if problem.status == 429 else CLOSE_UNAUTHORIZED, problem.message)
        return
    await ws.send_denial_response(Response(problem.render(ws.url.path), status_code=problem.status,
                                           headers=problem.headers, media_type=PROBLEM_TYPE))


async def _authenticate(ws: WebSocket, verify: Verify) -> Principal | None:
    """The principal of the token the first frame carries (`{"op": "auth", "token": ...}`), or close 4401."""
    try:
        first = json.loads(await asyncio.wait_for(ws.receive_text(), AUTH_WAIT_S))
        token = first.get("token") if isinstance(first, dict) and first.get("op") == "auth" else None
    except (TimeoutError, ValueError, WebSocketDisconnect, RuntimeError):
        token = None
    principal = _verified(token, verify) if isinstance(token, str) else None
    if principal is None:
        with contextlib.suppress(Exception):
            await ws.close(CLOSE_UNAUTHORIZED, _unauthorized().message)
    return principal


class Session:
    """One authenticated connection: reads commands, writes the queue, beats the heart."""

    def __init__(self, ws: WebSocket, hub: Hub, who: Subscriber) -> None:
        self.ws = ws
        self.hub = hub
        self.who = who
        self.inbound = TokenBucket(RATE, BURST, time.monotonic())
        self.bad = 0
        self.sending_since: float | None = None

    async def run(self) -> None:
        """Serve until the client leaves or a limit closes the connection."""
        tasks = {asyncio.create_task(self._pump()), asyncio.create_task(self._read()),
                 asyncio.create_task(self._heartbeat())}
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            code = next((t.result() for t in done if not t.cancelled() and t.exception() is None), None)
        finally:
            for task in tasks:
                task.cancel()
            await self.hub.leave(self.who)
        if code:
            with contextlib.suppress(Exception):
                await self.ws.close(code[0], code[1])

    async def _pump(self) -> tuple[int, str] | None:
        who, send = self.who, self.ws.send_text
        while True:
            try:
                frames = await who.take()
            except SlowConsumer:
                return CLOSE_SLOW, "slow consumer: send queue full"
            for text in frames:
                self.sending_since = time.monotonic()
                await send(text)
            self.sending_since = None

    async def _heartbeat(self) -> tuple[int, str] | None:
        while True:
            await asyncio.sleep(HEARTBEAT_S)
            # Book channels never queue up, so a client that stops reading shows up here instead: the
            # socket's buffer is full and one send has not finished for a whole bound.
            since = self.sending_since
            if since is not None and time.monotonic() - since > SEND_STALL_S:
                return CLOSE_SLOW, "slow consumer: not reading"
            with contextlib.suppress(SlowConsumer):
                self.who.send(json.dumps({"type": "heartbeat", "ts": int(time.time() * 1000)}))

    async def _read(self) -> tuple[int, str] | None:
        while True:
            try:
                text = await self.ws.receive_text()
            except (WebSocketDisconnect, RuntimeError):
                return None
            if not self.inbound.spend(time.monotonic()):
                return CLOSE_FLOOD, f"too many messages: at most {RATE:.0f}/s"
            reply = await self._command(text)
            if reply.get("type") == "error":
                self.bad += 1
                if self.bad > MAX_BAD_FRAMES:
                    return CLOSE_BAD_REQUEST, "too many bad messages"
            with contextlib.suppress(SlowConsumer):
                self.who.send(json.dumps(reply))
                if reply.get("type") == "subscribed":
                    self.hub.follow(self.who, reply["channel"])

    async def _command(self, text: str) -> dict[str, Any]:
        if len(text) > MAX_FRAME:
            return _error("payload_too_large", f"frames are at most {MAX_FRAME} bytes")
        try:
            frame = json.loads(text)
        except ValueError:
            return _error("bad_payload", "not JSON")
        if not isinstance(frame, dict) or set(frame) - {"op", "channel", "id"}:
            return _error("validation_error", "expected {op, channel} and nothing else")
        op, channel = frame.get("op"), frame.get("channel")
        if op == "ping":
            return {"type": "pong", "id": frame.get("id")}
        if op not in ("subscribe", "unsubscribe") or not isinstance(channel, str):
            return _error("validation_error", "op must be subscribe, unsubscribe or ping, with a channel")
        if op == "subscribe":
            if not await self.hub.subscribe(self.who, channel):
                return _error("unknown_channel", f"no channel {channel!r}", channel)
            return {"type": "subscribed", "channel": channel, "id": frame.get("id")}
        if not await self.hub.unsubscribe(self.who, channel):
            return _error("not_subscribed", f"not subscribed to {channel!r}", channel)
        return {"type": "unsubscribed", "channel": channel, "id": frame.get("id")}


def _error(code: str, message: str, channel: str | None = None) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "channel": channel}
