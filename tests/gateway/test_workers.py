"""A gateway of two worker processes on one port: every limit holds across the workers (not once per worker),
`/metrics` counts every worker, a killed worker comes back with its sockets' places given back, and no worker
outlives its supervisor.

Each test places its connections on the worker it wants (`tests.gateway.workers.connection_on`), so each
proves the limit is shared instead of hoping the kernel spread the load, and each uses its own loopback
source address, so per-IP limits of one test never spend another's.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from contracts.gateway import Role
from gateway.settings import Settings
from gateway.workers import run_dir
from tests.clearing.platform import Platform
from tests.gateway.conftest import start_gateway
from tests.gateway.harness import GatewayProcess, bearer, new_account
from tests.gateway.workers import RawHttp, alive, connection_on, wait_workers

WORKERS = 2
BURST_IP = 20
BURST_ACCOUNT = 5
PER_ACCOUNT = 3
PER_IP = 6


@pytest.fixture(scope="module")
async def multi(platform: Platform) -> AsyncIterator[GatewayProcess]:
    """Two workers, tight limits (practically no refill), small WebSocket caps."""
    process = await start_gateway(
        platform, "gateway-workers", QT_GATEWAY_WORKERS=str(WORKERS), QT_RATE_IP="0.001",
        QT_BURST_IP=str(BURST_IP), QT_RATE_ACCOUNT="0.001", QT_BURST_ACCOUNT=str(BURST_ACCOUNT),
        QT_WS_MAX_PER_ACCOUNT=str(PER_ACCOUNT), QT_WS_MAX_PER_IP=str(PER_IP))
    try:
        yield process
    finally:
        process.kill()


async def workers_of(gateway: GatewayProcess) -> list[int]:
    assert gateway.proc is not None
    return await wait_workers(gateway.proc.pid, WORKERS)


async def on_each(gateway: GatewayProcess, source: str) -> list[socket.socket]:
    """One connection from `source` on each worker."""
    pids = await workers_of(gateway)
    return [await connection_on(pid, gateway.port, source, pids) for pid in pids]


async def test_the_per_ip_rate_limit_is_one_bucket_for_all_workers(multi: GatewayProcess) -> None:
    conns = [await RawHttp.over(sock) for sock in await on_each(multi, "127.0.0.11")]
    try:
        statuses = [(await conns[i % WORKERS].get("/v1/markets"))[0] for i in range(BURST_IP + 6)]
    finally:
        for conn in conns:
            await conn.close()
    assert statuses == [200] * BURST_IP + [429] * 6, statuses


async def test_the_per_account_rate_limit_is_one_bucket_for_all_workers(multi: GatewayProcess) -> None:
    account = new_account("shared-acct")
    headers = bearer(multi.token(account))
    conns = [await RawHttp.over(sock) for sock in await on_each(multi, "127.0.0.12")]
    try:
        replies = [await conns[i % WORKERS].get(f"/v1/accounts/{account}/balances", headers)
                   for i in range(BURST_ACCOUNT + 3)]
    finally:
        for conn in conns:
            await conn.close()
    assert [status for status, _, _ in replies] == [200] * BURST_ACCOUNT + [429] * 3, replies
    assert replies[-1][2]["code"] == "rate_limited" and int(replies[-1][1]["retry-after"]) > 0


def ws_url(gateway: GatewayProcess, account: str) -> str:
    return gateway.url.replace("http", "ws", 1) + f"/v1/ws?token={gateway.token(account)}"


async def ws_on(gateway: GatewayProcess, worker: int, pids: list[int], source: str, account: str) -> ClientConnection:
    """A WebSocket of `account` from `source` served by `worker` (not yet authenticated: see `authenticated`)."""
    sock = await connection_on(worker, gateway.port, source, pids)
    return await websockets.connect(ws_url(gateway, account), sock=sock, open_timeout=30)


async def authenticated(ws: ClientConnection) -> ClientConnection:
    assert json.loads(await asyncio.wait_for(ws.recv(), 30))["type"] == "authenticated"
    return ws


async def close_code(ws: ClientConnection) -> int | None:
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            await asyncio.wait_for(ws.recv(), 30)
    return closed.value.rcvd.code if closed.value.rcvd is not None else None


async def test_the_per_account_socket_cap_counts_every_worker(multi: GatewayProcess) -> None:
    pids = await workers_of(multi)
    account, source = new_account("ws-shared"), "127.0.0.13"
    held = [await authenticated(await ws_on(multi, pids[n % WORKERS], pids, source, account))
            for n in range(PER_ACCOUNT)]
    try:
        for worker in pids:  # whichever worker the next one reaches, the account is full: refused before the upgrade
            with pytest.raises(InvalidStatus) as over:
                await ws_on(multi, worker, pids, source, account)
            assert over.value.response.status_code == 429
    finally:
        for ws in held:
            await ws.close()


async def test_the_per_ip_socket_cap_refuses_the_upgrade_on_every_worker(multi: GatewayProcess) -> None:
    pids = await workers_of(multi)
    source = "127.0.0.14"
    held = [await authenticated(await ws_on(multi, pids[n % WORKERS], pids, source, new_account("ws-ip")))
            for n in range(PER_IP)]
    try:
        for worker in pids:
            with pytest.raises(InvalidStatus) as denied:
                await ws_on(multi, worker, pids, source, new_account("ws-ip"))
            assert denied.value.response.status_code == 429
            assert json.loads(denied.value.response.body)["code"] == "rate_limited"
    finally:
        for ws in held:
            await ws.close()
    # the places were given back: the address connects again
    again = await authenticated(await ws_on(multi, pids[0], pids, source, new_account("ws-ip")))
    await again.close()


async def test_metrics_count_the_requests_of_every_worker(multi: GatewayProcess) -> None:
    ops = bearer(multi.token("operator", Role.OPS))
    route = ("/v1/markets/{symbol}", "GET", "200")  # only this test reads single markets here
    conns = [await RawHttp.over(sock) for sock in await on_each(multi, "127.0.0.15")]
    try:
        before = requests_counted(await scrape(conns[0], ops), route)
        for i in range(6):
            assert (await conns[i % WORKERS].get("/v1/markets/AAPL"))[0] == 200
        after = requests_counted(await scrape(conns[1], ops), route)
    finally:
        for conn in conns:
            await conn.close()
    assert after - before == 6, (before, after)


async def scrape(conn: RawHttp, headers: dict[str, str]) -> str:
    status, _, text = await conn.get("/metrics", headers)
    assert status == 200, text
    return str(text)


def requests_counted(text: str, route: tuple[str, str, str]) -> float:
    return sum(sample.value for family in text_string_to_metric_families(text) for sample in family.samples
               if sample.name == "qt_http_requests_total" and sample.labels.get("node") == "gateway"
               and (sample.labels.get("route"), sample.labels.get("method"), sample.labels.get("status")) == route)


async def test_a_killed_worker_comes_back_and_its_sockets_places_are_given_back(multi: GatewayProcess) -> None:
    pids = await workers_of(multi)
    victim, other = pids
    account, source = new_account("ws-killed"), "127.0.0.16"
    held = [await authenticated(await ws_on(multi, victim, pids, source, account)) for _ in range(PER_ACCOUNT)]
    os.kill(victim, signal.SIGKILL)
    for ws in held:
        await close_code(ws)  # the connection died with its worker
    assert multi.proc is not None
    replaced = await wait_workers(multi.proc.pid, WORKERS, exclude=frozenset({victim}))
    assert other in replaced
    again = [await authenticated(await ws_on(multi, replaced[n % WORKERS], replaced, source, account))
             for n in range(PER_ACCOUNT)]
    for ws in again:
        await ws.close()


async def test_no_worker_outlives_its_supervisor(platform: Platform) -> None:
    gateway = await start_gateway(platform, "gateway-orphans", QT_GATEWAY_WORKERS=str(WORKERS))
    try:
        assert gateway.proc is not None
        pids = await wait_workers(gateway.proc.pid, WORKERS)
        gateway.proc.send_signal(signal.SIGTERM)  # what `qt up` sends: the supervisor stops its workers by PID
        assert gateway.proc.wait(timeout=60) == 0
        assert not [pid for pid in pids if alive(pid)]
        assert not run_dir_of(gateway).exists()

        gateway.start()  # and a SIGKILLed supervisor takes its workers with it (parent-death signal)
        await gateway.wait_ready()
        pids = await wait_workers(gateway.proc.pid, WORKERS)
        gateway.proc.kill()
        gateway.proc.wait(timeout=10)
        deadline = asyncio.get_running_loop().time() + 60
        while [pid for pid in pids if alive(pid)] and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        assert not [pid for pid in pids if alive(pid)], "a worker outlived its SIGKILLed supervisor"
    finally:
        gateway.kill()


def run_dir_of(gateway: GatewayProcess) -> Path:
    return run_dir(Settings(data_dir=gateway.data_dir.resolve(), port=gateway.port))
