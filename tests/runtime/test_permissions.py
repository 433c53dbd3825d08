"""Every nkey role is refused, by the real server, what it does not need; and allowed what it does.

The session nats-server runs the generated authorization include (`tooling.credentials`), so these
tests see exactly the permissions `qt up` gives each role.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import nats
import pytest
from nats.aio.client import Client
from nats.errors import NoRespondersError

from contracts.credentials import nats_auth_path, nkey_seed_path
from contracts.permissions import inbox_prefix
from contracts.subjects import ROLES
from mesh.rpc import discover, subscribed
from tests.conftest import InProcessWallet
from tooling.natsserver import NatsServer

#: A subject no role but ops may publish to: its refusal marks the end of the server's answers to a test.
SENTINEL = "qt.permissions.sentinel"


class Refusals:
    """The permission errors the server sent one connection, in the order it sent them."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self._changed = asyncio.Event()

    async def record(self, exc: Exception) -> None:
        self.seen.append(str(exc).lower())
        self._changed.set()

    async def wait_for(self, text: str, timeout_s: float = 10.0) -> None:
        """Until an error containing `text` arrived (the server sends it after the action, not before a PONG)."""
        async with asyncio.timeout(timeout_s):
            while not any(text in seen for seen in self.seen):
                self._changed.clear()
                await self._changed.wait()


@asynccontextmanager
async def connect_as(server: NatsServer, role: str) -> AsyncIterator[tuple[Client, Refusals]]:
    """A client with `role`'s seed and inbox prefix, and the permission errors the server sends it."""
    refusals = Refusals()
    client = await nats.connect(server.url, nkeys_seed=str(nkey_seed_path(server.data_dir, role)),
                                inbox_prefix=inbox_prefix(role), error_cb=refusals.record, allow_reconnect=False,
                                name=f"perm-test-{role}")
    try:
        yield client, refusals
    finally:
        await client.close()


async def attempt(client: Client, action: str, subject: str) -> None:
    """Publish to, or subscribe to (`sub`, or `sub:<queue>`), `subject`."""
    if action == "pub":
        await client.publish(subject, b"{}")
    else:
        await client.subscribe(subject, queue=action.partition(":")[2])
    await subscribed(client)


async def refusals_until_sentinel(client: Client, refusals: Refusals) -> list[str]:
    """Every refusal the server sent before the sentinel's: it answers a connection's actions in order."""
    await attempt(client, "pub", SENTINEL)
    sentinel = violation("pub", SENTINEL)
    await refusals.wait_for(sentinel)
    return refusals.seen[: next(n for n, seen in enumerate(refusals.seen) if sentinel in seen)]


def violation(action: str, subject: str) -> str:
    """The server's -ERR for a refused action, lower-cased as `Refusals` keeps it (the server's case varies)."""
    kind = "publish" if action == "pub" else "subscription"
    queue = action.partition(":")[2]
    return (f'permissions violation for {kind} to "{subject}"' + (f' using queue "{queue}"' if queue else "")).lower()


REFUSED = [
    # the gateway is a client of the mesh: no money-moving internals, no serving, no wiretap, no admin
    ("gateway", "pub", "wallet.p1.hold"),
    ("gateway", "pub", "wallet.p1.settle"),
    ("gateway", "pub", "wallet.p1.credit"),
    ("gateway", "pub", "matching.AAPL.submit"),
    ("gateway", "pub", "matching.AAPL.cancel"),
    ("gateway", "pub", "trades.AAPL"),
    ("gateway", "pub", "orders.AAPL"),
    ("gateway", "pub", "md.ticker.AAPL"),
    ("gateway", "pub", "$JS.API.STREAM.DELETE.WALLET"),
    ("gateway", "pub", "$JS.API.STREAM.PURGE.KV_idempotency"),
    ("gateway", "pub", "$JS.API.CONSUMER.CREATE.WALLET"),
    ("gateway", "pub", "$KV.sagas.x"),
    ("gateway", "pub", "$JS.API.STREAM.UPDATE.KV_sagas"),  # it may reconfigure only its own bucket
    ("gateway", "sub", ">"),
    ("gateway", "sub", "_INBOX.>"),
    ("gateway", "sub", "_INBOX_clearing.>"),
    ("gateway", "sub:q", "marketdata.ticker"),
    ("gateway", "sub", "marketdata.ticker"),
    ("gateway", "sub:q", "wallet.p1.deposit"),
    ("gateway", "sub", "$SRV.PING.wallet"),
    # market data reads TRADES and publishes feeds, nothing else
    ("market_data", "pub", "wallet.p1.deposit"),
    ("market_data", "pub", "wallet.p1.withdraw"),
    ("market_data", "pub", "clearing.place_order"),
    ("market_data", "pub", "trades.AAPL"),
    ("market_data", "pub", "md.book.AAPL"),
    ("market_data", "pub", "$JS.API.STREAM.DELETE.TRADES"),
    ("market_data", "pub", "$JS.API.STREAM.PURGE.TRADES"),
    ("market_data", "sub", "wallet.events.>"),
    ("market_data", "sub:q", "matching.AAPL.book"),
    # the wallet serves and relays its events
    ("wallet", "pub", "orders.AAPL"),
    ("wallet", "pub", "exec.AAPL.entry"),
    ("wallet", "pub", "trades.AAPL"),
    ("wallet", "pub", "matching.AAPL.submit"),
    ("wallet", "pub", "$KV.sagas.x"),
    ("wallet", "pub", "$JS.API.STREAM.DELETE.WALLET"),
    ("wallet", "sub", ">"),
    ("wallet", "sub:q", "clearing.place_order"),
    # matching journals and publishes its output; it asks nobody
    ("matching", "pub", "wallet.p1.deposit"),
    ("matching", "pub", "wallet.p1.settle"),
    ("matching", "pub", "trades.AAPL"),
    ("matching", "pub", "wallet.events.alice.USD"),
    ("matching", "pub", "$JS.API.STREAM.DELETE.ORDERS"),
    ("matching", "pub", "$JS.API.STREAM.PURGE.ORDERS"),
    ("matching", "sub:q", "wallet.p1.hold"),
    ("matching", "sub", "_INBOX_gateway.>"),
    # clearing moves money only through holds and settlement
    ("clearing", "pub", "wallet.p1.deposit"),
    ("clearing", "pub", "wallet.p1.withdraw"),
    ("clearing", "pub", "wallet.p1.credit"),
    ("clearing", "pub", "wallet.p1.debit"),
    ("clearing", "pub", "orders.AAPL"),
    ("clearing", "pub", "exec.AAPL.entry"),
    ("clearing", "pub", "wallet.events.alice.USD"),
    ("clearing", "pub", "$KV.idempotency.x"),
    ("clearing", "pub", "$JS.API.STREAM.DELETE.EXEC"),
    ("clearing", "pub", "$JS.API.CONSUMER.DELETE.EXEC.other"),
    ("clearing", "pub", "$JS.API.CONSUMER.CREATE.EXEC"),  # only its durable, no ephemeral reader of EXEC
    ("clearing", "pub", "$JS.API.CONSUMER.CREATE.EXEC.other.exec.>"),
    ("clearing", "sub:q", "marketdata.ticker"),
    ("clearing", "pub", "wallet.p1.hold"),  # it batches every wallet command: single ones are not its to send
]

ALLOWED = [
    ("gateway", "pub", "wallet.p1.deposit"),  # only through the gateway's ops-only routes
    ("gateway", "pub", "clearing.place_order"),
    ("gateway", "pub", "marketdata.ticker"),
    ("gateway", "pub", "$SRV.PING.wallet"),
    ("gateway", "pub", "$JS.API.DIRECT.GET.KV_idempotency.$KV.idempotency.k"),
    ("gateway", "pub", "$KV.idempotency.k"),
    ("gateway", "pub", "$JS.API.STREAM.UPDATE.KV_idempotency"),  # sets its bucket's TTL (QT_IDEMPOTENCY_TTL_S)
    ("gateway", "sub", "md.book.AAPL"),
    ("gateway", "sub", "md.candles.AAPL.1m"),
    ("gateway", "sub", "exec.>"),
    ("gateway", "sub", "wallet.events.alice.*"),
    ("gateway", "sub", "_INBOX_gateway.x.*"),
    ("market_data", "pub", "md.ticker.AAPL"),
    ("market_data", "pub", "$JS.API.CONSUMER.CREATE.TRADES"),
    ("market_data", "sub:q", "marketdata.ticker"),
    ("market_data", "sub", "$SRV.PING.marketdata"),
    ("wallet", "pub", "wallet.events.alice.USD"),
    ("wallet", "pub", "$KV.leases.wallet.p0"),
    ("wallet", "sub:q", "wallet.p1.deposit"),
    ("matching", "pub", "orders.AAPL"),
    ("matching", "pub", "exec.AAPL.entry"),
    ("matching", "pub", "md.book.AAPL"),
    ("matching", "sub:q", "matching.AAPL.submit"),
    ("matching", "sub:metrics.x", "matching.status"),
    ("clearing", "pub", "wallet.p1.batch"),
    ("clearing", "pub", "matching.AAPL.submit"),
    ("clearing", "pub", "trades.AAPL"),
    ("clearing", "pub", "$JS.ACK.EXEC.clearing-exec.1.2.3.4.5"),
    ("clearing", "pub", "$JS.API.CONSUMER.MSG.NEXT.EXEC.clearing-exec"),
    ("clearing", "pub", "$JS.API.CONSUMER.CREATE.EXEC.clearing-exec.exec.>"),
    ("clearing", "sub", "$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.EXEC.clearing-exec"),
    ("clearing", "sub:q", "clearing.place_order"),
]


def test_every_role_but_ops_has_permissions_in_the_generated_conf(nats_server: NatsServer) -> None:
    conf = nats_auth_path(nats_server.data_dir).read_text()
    users = [line for line in conf.splitlines() if line.strip().startswith("{nkey:")]

    assert len(users) == len(ROLES)
    assert all("permissions" in line for line in users if not line.rstrip().endswith("full rights"))
    assert sum("permissions" in line for line in users) == len(ROLES) - 1


@pytest.mark.parametrize(("role", "action", "subject"), REFUSED)
async def test_role_is_refused(nats_server: NatsServer, role: str, action: str, subject: str) -> None:
    async with connect_as(nats_server, role) as (client, refusals):
        await attempt(client, action, subject)
        await refusals.wait_for(violation(action, subject))

        assert refusals.seen == [f"nats: {violation(action, subject)}"]


@pytest.mark.parametrize(("role", "action", "subject"), ALLOWED)
async def test_role_is_allowed(nats_server: NatsServer, role: str, action: str, subject: str) -> None:
    async with connect_as(nats_server, role) as (client, refusals):
        await attempt(client, action, subject)

        assert await refusals_until_sentinel(client, refusals) == []


async def test_ops_has_full_rights(nats_server: NatsServer) -> None:
    async with connect_as(nats_server, "ops") as (client, refusals):
        for action, subject in (("pub", "wallet.p1.deposit"), ("pub", "$JS.API.STREAM.INFO.WALLET"), ("sub", ">"),
                                ("pub", SENTINEL)):
            await attempt(client, action, subject)
        echoed = await client.subscribe("qt.permissions.echo")
        await client.publish("qt.permissions.echo", b"1")
        await echoed.next_msg(timeout=10)  # round trip: every earlier action was processed

    assert refusals.seen == []


async def test_a_gateway_key_cannot_answer_for_market_data(nats_server: NatsServer, nc: Client) -> None:
    async with connect_as(nats_server, "gateway") as (gateway, _):
        forged = await gateway.subscribe("marketdata.ticker", queue="q")
        await subscribed(gateway)

        # The refused subscription registered no interest: nobody can answer, let alone with forged prices.
        with pytest.raises(NoRespondersError):
            await nc.request("marketdata.ticker", b'{"instrument":"AAPL"}', timeout=5)
        assert forged.delivered == 0


async def test_a_service_answers_requests_but_cannot_publish_to_inboxes(nats_server: NatsServer, nc: Client) -> None:
    async with connect_as(nats_server, "market_data") as (service, refusals):
        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"pong")

        await service.subscribe("marketdata.ticker", queue="q", cb=answer)
        await subscribed(service)

        reply = await nc.request("marketdata.ticker", b"{}", timeout=5)  # allow_responses: one reply
        await attempt(service, "pub", "_INBOX.forged")  # but no unsolicited message to anyone's inbox

        assert reply.data == b"pong"
        assert await refusals_until_sentinel(service, refusals) == [f"nats: {violation('pub', '_INBOX.forged')}"]


async def test_a_role_reads_its_own_replies(nats_server: NatsServer, nc: Client) -> None:
    async with connect_as(nats_server, "gateway") as (gateway, refusals):
        async def answer(msg: nats.aio.msg.Msg) -> None:
            await msg.respond(b"ok")

        responder = await nc.subscribe("clearing.saga_get", cb=answer)
        await subscribed(nc)
        try:
            reply = await gateway.request("clearing.saga_get", b"{}", timeout=5)
        finally:
            await responder.unsubscribe()

        assert reply.data == b"ok"
        assert await refusals_until_sentinel(gateway, refusals) == []


async def test_discovery_gets_one_answer_per_request_from_every_service(nats_server: NatsServer,
                                                                         wallet: InProcessWallet) -> None:
    async with connect_as(nats_server, "gateway") as (gateway, refusals):
        found = await discover(gateway, wait_s=1.0)

        # INFO and STATS each have their own reply subject: a service may answer a request only once.
        mine = [i for i in found if (i.get("info") or i.get("stats") or {}).get("name") == "wallet"]
        assert mine and all({"info", "stats"} <= instance.keys() for instance in mine)
        assert await refusals_until_sentinel(gateway, refusals) == []
