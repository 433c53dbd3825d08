"""A real platform for clearing tests: nats-server, wallet, matching and clearing processes."""

from __future__ import annotations

import asyncio
import re
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgpack
from nats.aio.client import Client

from contracts.clearing import FINAL_STATUSES
from contracts.codec import Wire
from contracts.errors import QtError
from contracts.instruments import INSTRUMENTS, engine_instruments
from contracts.subjects import (
    PRESENCE_BUCKET,
    SAGAS_BUCKET,
    WALLET_PARTITION_ENV,
    WALLET_PARTITIONS_ENV,
    clearing_subject,
    wallet_partition,
    wallet_subject,
)
from mesh.rpc import call
from nodes.clearing.recovery import presence_key
from tests.conftest import wait_for_instruments, wait_for_service
from tests.polling import eventually
from tests.procs import NodeProcess
from tooling.natsserver import NatsServer

FEES = "venue-fees"


@dataclass
class Platform:
    """The processes of one test platform; every one is killed by PID at teardown."""

    server: NatsServer
    nc: Client
    root: Path
    procs: list[NodeProcess] = field(default_factory=list)
    nats_url: str = ""
    """The server list nodes connect with (a cluster's members); empty = `server.url`."""
    members: list[NatsServer] = field(default_factory=list)
    """Every server of a cluster (`server` is one of them); empty on a single server."""
    partitions: int = 1
    """Wallet partitions: one wallet process each; every node is told the count (`QT_WALLET_PARTITIONS`)."""

    async def start(self, name: str, *, instance: str = "", wait: bool = True, **env: str) -> NodeProcess:
        """Start `python -m nodes.<name>` with its own data dir and wait until it answers PING."""
        data = self.root / f"{name}{instance}"
        env = {WALLET_PARTITIONS_ENV: str(self.partitions), **env}
        proc = NodeProcess(f"nodes.{name}", self.nats_url or self.server.url, data, self.server.data_dir,
                           extra_env=env).start()
        self.procs.append(proc)
        if wait and name == "wallet":
            await wait_partition(self.nc, int(env.get(WALLET_PARTITION_ENV, "0")), self.partitions, proc)
        elif wait:
            await wait_for_service(self.nc, name, timeout_s=30)
        return proc

    async def start_engines(self, engines: int = 2) -> list[NodeProcess]:
        """`engines` matching engines splitting the listed instruments as `qt up` does (`matching`,
        `matching2`, ...); waits until every instrument is served."""
        procs = [await self.start("matching", instance="" if n == 0 else str(n + 1), wait=False,
                                  QT_MATCHING_INSTRUMENTS=",".join(engine_instruments(n, engines)))
                 for n in range(engines)]
        await wait_for_instruments(self.nc, INSTRUMENTS)
        return procs

    async def start_wallets(self) -> list[NodeProcess]:
        """One wallet process per partition (data dirs `wallet-p<n>`), each answering before the next starts."""
        return [await self.start("wallet", instance=f"-p{p}", **{WALLET_PARTITION_ENV: str(p)})
                for p in range(self.partitions)]

    async def start_all(self, **clearing_env: str) -> None:
        """Wallet (one process per partition), matching and one clearing instance."""
        if self.partitions == 1:
            await self.start("wallet")
        else:
            await self.start_wallets()
        await self.start("matching")
        await self.start("clearing", **clearing_env)

    async def keep_running(self, restarts: list[Restart], poll_s: float = 0.5) -> None:
        """Restart, as `qt up`'s supervisor does, every node that exited without the test stopping it (a
        node whose lease ran out while the servers elected a leader exits by design, `EXIT_LEASE_LOST`);
        each restart is recorded in `restarts` with its exit code and why its log says it stopped. Runs
        until cancelled."""
        while True:
            await asyncio.sleep(poll_s)
            for proc in list(self.procs):
                code = proc.proc.poll() if proc.proc is not None else None
                if code is not None and not proc.stopped:
                    restarts.append(Restart(proc.data_dir.name, code, last_words(proc.log_path)))
                    proc.start()

    def kill_all(self) -> None:
        """Kill every process we started (teardown)."""
        for proc in self.procs:
            proc.kill()


@dataclass(frozen=True)
class Restart:
    """A node the keeper found exited and started again."""

    node: str
    code: int
    last_words: str

    def __str__(self) -> str:
        return f"{self.node} (exit {self.code}: {self.last_words})"


def last_words(log: Path) -> str:
    """The last warning or error in a node's log (why it stopped, e.g. `LeaseLost`), else its last line."""
    with open(log, "rb") as f:
        f.seek(max(0, f.seek(0, 2) - 8192))
        lines = [line for line in f.read().decode(errors="replace").splitlines() if line.strip()]
    said = [line for line in lines if re.search(r"level=(warning|error)|Traceback|Error", line)]
    return (said or lines or [""])[-1][-200:]


async def place(nc: Client, timeout: float = 15.0, **body: Any) -> dict[str, Any]:
    """`clearing.place_order` on the JSON wire (decimal strings)."""
    return await call(nc, clearing_subject("place_order"), body, wire=Wire.JSON, timeout=timeout)


async def clearing(nc: Client, endpoint: str, timeout: float = 15.0, **body: Any) -> dict[str, Any]:
    """Any clearing endpoint on the JSON wire."""
    return await call(nc, clearing_subject(endpoint), body, wire=Wire.JSON, timeout=timeout)


async def gone_quiet(nc: Client, owner: str) -> None:
    """List clearing instance `owner` as last alive an hour ago, as a killed instance stays listed: a
    running clearing then scans for its abandoned sagas (write the sagas first)."""
    quiet = msgpack.packb({"owner": owner, "at_ms": int(time.time() * 1000) - 3_600_000})
    await (await nc.jetstream().key_value(PRESENCE_BUCKET)).put(presence_key(owner), quiet)


async def wait_final(nc: Client, saga_id: str, timeout_s: float = 40.0) -> dict[str, Any]:
    """Poll saga_get until the saga's record is final: the final write may trail the reply, and recovery
    runs every second."""
    return await eventually(lambda: clearing(nc, "saga_get", saga_id=saga_id, timeout=2),
                            lambda saga: saga["status"] in FINAL_STATUSES,
                            timeout_s=timeout_s, every_s=0.2, ignoring=(QtError,), what=f"saga {saga_id} final")


async def wallet(nc: Client, endpoint: str, partitions: int = 1, **body: Any) -> dict[str, Any]:
    """Any wallet endpoint on the partition of `body["account"]` (p0 without one), msgpack wire (integer units)."""
    partition = wallet_partition(body["account"], partitions) if "account" in body else 0
    return await call(nc, wallet_subject(endpoint, partition), body, timeout=15)


async def verify_all(nc: Client, partitions: int = 1) -> list[dict[str, Any]]:
    """`verify` of every account on every partition: one reply per partition."""
    return [await call(nc, wallet_subject("verify", p), {}, timeout=30) for p in range(partitions)]


def account_on(partition: int, partitions: int, prefix: str) -> str:
    """An account name starting with `prefix` that hashes to `partition` (of `partitions`)."""
    return next(name for n in range(10_000)
                if wallet_partition(name := f"{prefix}{n}", partitions) == partition)


async def wait_partition(nc: Client, partition: int, partitions: int, proc: NodeProcess | None = None) -> None:
    """Until wallet partition `partition` answers on its own subject (fails fast if `proc` died)."""
    probe = account_on(partition, partitions, "probe-")

    async def answer() -> dict[str, Any]:
        if proc is not None and proc.proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"wallet p{partition} exited with {proc.proc.returncode}")
        return await call(nc, wallet_subject("balance", partition), {"account": probe}, timeout=1)

    await eventually(answer, lambda _: True, timeout_s=30, ignoring=(QtError,), what=f"wallet p{partition} answering")


async def fund(nc: Client, account: str, partitions: int = 1, **amounts: int) -> None:
    """Deposit integer units of each asset (op_id per account and asset: idempotent)."""
    for asset, amount in amounts.items():
        await wallet(nc, "deposit", partitions, account=account, asset=asset, amount=amount,
                     op_id=f"fund:{account}:{asset}")


async def balances(nc: Client, account: str, partitions: int = 1) -> dict[str, tuple[int, int]]:
    """{asset: (available, held)} in integer units."""
    reply = await wallet(nc, "balance", partitions, account=account)
    return {asset: (row["available"], row["held"]) for asset, row in reply["balances"].items()}


async def totals(nc: Client, accounts: list[str], partitions: int = 1) -> dict[str, int]:
    """Per asset, the sum of available + held over `accounts`."""
    out: dict[str, int] = defaultdict(int)
    for account in accounts:
        for asset, (available, held) in (await balances(nc, account, partitions)).items():
            out[asset] += available + held
    return dict(out)


async def refused(coro: Any) -> QtError:
    """The QtError a call raised (fails the test if it succeeded)."""
    try:
        result = await coro
    except QtError as exc:
        return exc
    raise AssertionError(f"expected an error, got {result}")


async def every_saga(nc: Client) -> dict[str, dict[str, Any]]:
    """Every record in the `sagas` bucket (not a page of the index): saga id -> stored record."""
    bucket = await nc.jetstream().key_value(SAGAS_BUCKET)
    records: dict[str, dict[str, Any]] = {}
    watcher = await bucket.watchall(ignore_deletes=True)
    try:
        async for entry in watcher:
            if entry is None:  # every key present was delivered
                break
            if entry.value:
                records[entry.key] = msgpack.unpackb(entry.value, raw=False)
    finally:
        await watcher.stop()
    return records


async def every_saga_final(nc: Client, timeout_s: float = 60.0) -> dict[str, dict[str, Any]]:
    """Every saga in the bucket once all of them are final (a final record is written just after the
    reply, and recovery finishes abandoned ones); fails naming the ones still open at the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        records = await every_saga(nc)
        open_ = {sid: r["status"] for sid, r in records.items() if r["status"] not in FINAL_STATUSES}
        if not open_:
            return records
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(open_)} of {len(records)} sagas not final: {dict(list(open_.items())[:10])}")
        await asyncio.sleep(0.2)
