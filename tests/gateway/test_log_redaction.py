"""Tokens never reach the gateway's log: `?token=` in a WebSocket URL and Authorization values are redacted."""

from __future__ import annotations

import json
import uuid

import pytest
import websockets

from gateway.redact import REDACTED, redact
from tests.gateway.harness import GatewayProcess, new_account
from tests.polling import eventually


async def log_line_with(gateway: GatewayProcess, marker: str, timeout_s: float = 15.0) -> str:
    """The first line of the gateway's log that contains `marker` (polled: the process writes it)."""
    lines = await eventually(lambda: [line for line in gateway.log_path.read_text().splitlines() if marker in line],
                             timeout_s=timeout_s, what=f"{marker} logged")
    return lines[0]


async def test_a_websocket_token_in_the_url_is_not_logged(gateway: GatewayProcess) -> None:
    account = new_account("logged")
    token = gateway.token(account)
    probe = uuid.uuid4().hex
    url = gateway.url.replace("http", "ws", 1) + f"/v1/ws?token={token}&probe={probe}"
    async with websockets.connect(url, open_timeout=10) as ws:
        assert json.loads(await ws.recv()) == {"type": "authenticated", "account": account}
    line = await log_line_with(gateway, probe)
    assert f"token={REDACTED}" in line, line
    assert token not in gateway.log_path.read_text()
    assert token.split(".")[2] not in gateway.log_path.read_text()  # not even the signature alone


async def test_a_refused_websocket_token_is_not_logged_either(gateway: GatewayProcess) -> None:
    bogus = f"bogus{uuid.uuid4().hex}"
    url = gateway.url.replace("http", "ws", 1) + f"/v1/ws?token={bogus}"
    with pytest.raises(websockets.exceptions.WebSocketException):
        async with websockets.connect(url, open_timeout=10) as ws:
            await ws.recv()
    probe = uuid.uuid4().hex  # a later line proves the log caught up past the refused handshake
    async with websockets.connect(gateway.url.replace("http", "ws", 1) + f"/v1/ws?probe={probe}", open_timeout=10):
        pass
    await log_line_with(gateway, probe)
    assert bogus not in gateway.log_path.read_text()


@pytest.mark.parametrize("line", [
    "Authorization: Bearer eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln",
    "headers={'authorization': 'Bearer abc.def.ghi'}",
    "[(b'authorization', b'Bearer s3cret')]",
    "authorization=s3cret",
    'GET /v1/ws?access_token=s3cret&x=1 HTTP/1.1',
    '{"op": "auth", "token": "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJhIn0.c2ln"}',
])
def test_every_form_of_a_token_is_redacted(line: str) -> None:
    out = redact(line)
    assert REDACTED in out
    assert "s3cret" not in out and "c2ln" not in out and "abc.def.ghi" not in out
