"""What each nkey role may publish and subscribe to on the bus: least privilege, one table.

`qt up` renders these into the server's authorization include (`tooling.credentials`). A role gets
the subjects its own code uses and nothing else: its service's endpoints and `$SRV` discovery (to
serve), the endpoints it calls (to ask), the JetStream API of its own streams and buckets, and its
own reply inbox `_INBOX_<role>.>` (so it cannot read another role's replies). Services answer through
`allow_responses` (one reply to a request they received) instead of a publish allow on inboxes.
`ops` (the `qt` CLI, tests, operators) keeps full rights.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from contracts.subjects import (
    BUSTS_BUCKET,
    CLEARING_EXEC_CONSUMER,
    CLEARING_SERVICE,
    DLQ_REPLAY_ENDPOINT,
    DLQ_STREAM,
    EXEC_STREAM,
    IDEMPOTENCY_BUCKET,
    LEASES_BUCKET,
    MARKETDATA_SERVICE,
    MATCHING_SERVICE,
    METRICS_ENDPOINT,
    ORDERS_STREAM,
    PRESENCE_BUCKET,
    ROLES,
    SAGA_INDEX_BUCKET,
    SAGA_PEEK_ENDPOINT,
    SAGAS_BUCKET,
    SNAPSHOTS_OBJECTS,
    TRADES_STREAM,
    WALLET_EVENTS_PREFIX,
    WALLET_SERVICE,
    WALLET_STREAM,
    ClearingEndpoint,
    MarketDataEndpoint,
    MatchingEndpoint,
    WalletEndpoint,
    dlq_subject,
)

JS_API: Final = "$JS.API"
#: The queue group every micro endpoint subscribes in (`NodeService.start`).
SERVICE_QUEUE: Final = "q"
#: `metrics` subscribes in `metrics.<instance id>` (`NodeService.start`), so every instance answers a scrape;
#: dotted, because a permission's `*` matches a whole token only (`metrics.*`).
METRICS_QUEUE_PREFIX: Final = "metrics."
#: The role with full rights: the `qt` CLI, the seed, smoke and tests.
OPS_ROLE: Final = "ops"
#: How long a service may take to answer a request it received (`allow_responses`): longer than the
#: longest caller timeout (120 s: the gateway's verify and rebuild). The server's default is 2 minutes.
#: The server remembers every reply subject delivered to a service for this long (JetStream push
#: deliveries carry one too), so it is not made longer than it must be.
RESPONSE_EXPIRES: Final = "3m"


def inbox_prefix(role: str) -> str:
    """The reply-inbox prefix a role connects with; its subscribe allow covers only this prefix."""
    return f"_INBOX_{role}"


@dataclass(frozen=True)
class Permissions:
    """One role's allow-lists; anything not listed is refused by the server."""

    publish: tuple[str, ...]
    subscribe: tuple[str, ...]
    allow_responses: bool


# --- building blocks --------------------------------------------------------------------------------

def _serve(service: str, *, partitioned: bool = False) -> tuple[str, ...]:
    """Subscriptions of a micro service: its endpoints (in its queue group) and `$SRV` discovery; a
    partitioned service's endpoints are `<service>.p<n>.<endpoint>` (`*` matches a whole token only)."""
    return (
        f"{service}.*.* {SERVICE_QUEUE}" if partitioned else f"{service}.* {SERVICE_QUEUE}",
        # `metrics` alone is in a queue group of the instance's own, so a scrape hears every instance
        f"{service}.metrics {METRICS_QUEUE_PREFIX}*",
        "$SRV.PING", "$SRV.INFO", "$SRV.STATS",
        f"$SRV.*.{service}", f"$SRV.*.{service}.*",
    )


def _call(service: str, *endpoints: str) -> tuple[str, ...]:
    return tuple(f"{service}.{endpoint}" for endpoint in endpoints)


def _call_each(service: str, *endpoints: str) -> tuple[str, ...]:
    """Endpoints a service answers per partition or per instrument: `<service>.*.<endpoint>` (`wallet.*.batch`,
    `matching.*.submit`)."""
    return tuple(f"{service}.*.{endpoint}" for endpoint in endpoints)


def _ensure(stream: str, *, update: bool = True) -> tuple[str, ...]:
    """`mesh.jetstream.ensure_*`: look the stream up, create it, and (streams, not buckets) update it."""
    return tuple(f"{JS_API}.STREAM.{op}.{stream}" for op in ("INFO", "CREATE", *(("UPDATE",) if update else ())))


def _read(stream: str) -> tuple[str, ...]:
    """Stream info and single-message gets (KV get is a direct get of `KV_<bucket>`)."""
    return (
        f"{JS_API}.STREAM.INFO.{stream}", f"{JS_API}.STREAM.MSG.GET.{stream}",
        f"{JS_API}.DIRECT.GET.{stream}", f"{JS_API}.DIRECT.GET.{stream}.>",
    )


def _consume(stream: str, durable: str | None = None) -> tuple[str, ...]:
    """Consumers of `stream`: any ephemeral one (create, inspect, delete, pull), or only the `durable` named."""
    if durable is not None:
        return (
            f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}", f"{JS_API}.CONSUMER.CREATE.{stream}.{durable}.>",
            f"{JS_API}.CONSUMER.DURABLE.CREATE.{stream}.{durable}", f"{JS_API}.CONSUMER.INFO.{stream}.{durable}",
            f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{durable}",
        )
    return (
        f"{JS_API}.CONSUMER.CREATE.{stream}", f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"{JS_API}.CONSUMER.INFO.{stream}.*", f"{JS_API}.CONSUMER.DELETE.{stream}.*",
        f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.*",
    )


def _bucket(bucket: str, *, watch: bool = False, update: bool = False) -> tuple[str, ...]:
    """A KV bucket: ensure it (and, if `update`, reconfigure it), get, put/create/update/delete its keys,
    and (if `watch`) watch them."""
    stream = f"KV_{bucket}"
    return (*_ensure(stream, update=update), *_read(stream), f"$KV.{bucket}.>", *(_consume(stream) if watch else ()))


def _objects(store: str) -> tuple[str, ...]:
    """An object store: ensure it, read an object (an ordered consumer of its chunks), replace one."""
    stream = f"OBJ_{store}"
    return (*_ensure(stream, update=False), *_read(stream), *_consume(stream), f"{JS_API}.STREAM.PURGE.{stream}",
            f"$O.{store}.>")


def _role(role: str, *, publish: tuple[str, ...], subscribe: tuple[str, ...] = (),
          serves: bool = True) -> Permissions:
    return Permissions(publish=tuple(dict.fromkeys(publish)),
                       subscribe=tuple(dict.fromkeys((f"{inbox_prefix(role)}.>", *subscribe))),
                       allow_responses=serves)


# --- the table --------------------------------------------------------------------------------------

_DLQ_EXEC: Final = dlq_subject(EXEC_STREAM, CLEARING_EXEC_CONSUMER)
#: Every clearing instance's own `saga_peek` (`clearing_owner_subject`).
_PEEK: Final = f"{CLEARING_SERVICE}.owner.*.{SAGA_PEEK_ENDPOINT}"

PERMISSIONS: Final[dict[str, Permissions]] = {
    # Appends committed events to WALLET (the outbox relay); owns a partition lease.
    "wallet": _role(
        "wallet",
        publish=(f"{WALLET_EVENTS_PREFIX}.>", *_ensure(WALLET_STREAM), *_read(WALLET_STREAM), *_bucket(LEASES_BUCKET)),
        subscribe=_serve(WALLET_SERVICE, partitioned=True),
    ),
    # Journals to ORDERS and tails it, publishes EXEC and the L2 feed, keeps book snapshots.
    "matching": _role(
        "matching",
        publish=(
            "orders.>", "exec.>", "md.book.>",
            *_ensure(ORDERS_STREAM), *_read(ORDERS_STREAM), *_consume(ORDERS_STREAM),
            # js.subscribe(subject) without a stream looks the stream up by subject
            f"{JS_API}.STREAM.NAMES",
            *_ensure(EXEC_STREAM), *_read(EXEC_STREAM),
            *_bucket(LEASES_BUCKET), *_objects(SNAPSHOTS_OBJECTS),
        ),
        # per instrument: `matching.<instrument>.<endpoint>` (only the owner subscribes); `status`
        # like `metrics` in a queue group of each engine's own, so ops hear every engine
        subscribe=(*_serve(MATCHING_SERVICE), f"{MATCHING_SERVICE}.*.* {SERVICE_QUEUE}",
                   f"{MATCHING_SERVICE}.status {METRICS_QUEUE_PREFIX}*"),
    ),
    # Drives sagas: calls wallet and matching, publishes TRADES, consumes EXEC (durable), parks in DLQ.
    "clearing": _role(
        "clearing",
        publish=(
            *_call_each(WALLET_SERVICE, WalletEndpoint.BATCH),  # every wallet command clearing makes is batched
            f"$SRV.INFO.{WALLET_SERVICE}",  # on start: the partition count the wallets announce
            *_call_each(MATCHING_SERVICE, MatchingEndpoint.SUBMIT, MatchingEndpoint.CANCEL, MatchingEndpoint.ORDER),
            "trades.>", *_ensure(TRADES_STREAM),
            *_ensure(EXEC_STREAM), *_read(EXEC_STREAM), *_consume(EXEC_STREAM, durable=CLEARING_EXEC_CONSUMER),
            f"$JS.ACK.{EXEC_STREAM}.{CLEARING_EXEC_CONSUMER}.>",
            _DLQ_EXEC, *_ensure(DLQ_STREAM), *_read(DLQ_STREAM), f"{JS_API}.STREAM.MSG.DELETE.{DLQ_STREAM}",
            *_bucket(SAGAS_BUCKET, watch=True), *_bucket(SAGA_INDEX_BUCKET, watch=True), *_bucket(BUSTS_BUCKET),
            *_bucket(PRESENCE_BUCKET, watch=True),
            _PEEK,  # the instance driving a saga, for a read that reached another one
        ),
        subscribe=(*_serve(CLEARING_SERVICE), f"{_PEEK} {SERVICE_QUEUE}",
                   f"$JS.EVENT.ADVISORY.CONSUMER.MAX_DELIVERIES.{EXEC_STREAM}.{CLEARING_EXEC_CONSUMER}"),
    ),
    # Tails TRADES from the start on every boot; publishes the live md.* feeds.
    "market_data": _role(
        "market_data",
        publish=("md.trades.>", "md.candles.>", "md.ticker.>",
                 *_ensure(TRADES_STREAM), *_read(TRADES_STREAM), *_consume(TRADES_STREAM)),
        subscribe=_serve(MARKETDATA_SERVICE),
    ),
    # Serves nothing on the bus: asks the services what HTTP routes need, reads feeds for WebSockets,
    # keeps idempotency records and lists DLQ. Deposits, withdrawals and rebuilds are ops-only routes.
    "gateway": _role(
        "gateway",
        publish=(
            *_call_each(WALLET_SERVICE, WalletEndpoint.DEPOSIT, WalletEndpoint.WITHDRAW, WalletEndpoint.BALANCE,
                        WalletEndpoint.EVENTS, WalletEndpoint.VERIFY, WalletEndpoint.REBUILD),
            *_call(WALLET_SERVICE, METRICS_ENDPOINT, DLQ_REPLAY_ENDPOINT),
            *_call(MATCHING_SERVICE, METRICS_ENDPOINT, MatchingEndpoint.STATUS, DLQ_REPLAY_ENDPOINT),
            *_call_each(MATCHING_SERVICE, MatchingEndpoint.BOOK, MatchingEndpoint.ORDER, MatchingEndpoint.STATUS),
            *_call(CLEARING_SERVICE, ClearingEndpoint.PLACE_ORDER, ClearingEndpoint.CANCEL_ORDER,
                   ClearingEndpoint.SAGA_GET, ClearingEndpoint.SAGA_LIST, METRICS_ENDPOINT, DLQ_REPLAY_ENDPOINT),
            *_call(MARKETDATA_SERVICE, MarketDataEndpoint.TICKER, MarketDataEndpoint.CANDLES, MarketDataEndpoint.TRADES,
                   METRICS_ENDPOINT, DLQ_REPLAY_ENDPOINT),
            "$SRV.PING.*", "$SRV.INFO", "$SRV.STATS",
            f"$SRV.INFO.{WALLET_SERVICE}",  # /ready: the partition count the wallets announce
            *_bucket(IDEMPOTENCY_BUCKET, update=True), *_read(DLQ_STREAM),
            # GET /v1/ops/streams (read-only): stream and consumer listings, lease values
            f"{JS_API}.STREAM.LIST", f"{JS_API}.CONSUMER.LIST.*", *_read(f"KV_{LEASES_BUCKET}"),
        ),
        subscribe=("md.book.*", "md.trades.*", "md.candles.*.*", "md.ticker.*", "exec.>", f"{WALLET_EVENTS_PREFIX}.>"),
        serves=False,
    ),
}

if set(PERMISSIONS) | {OPS_ROLE} != set(ROLES):  # a new role must be given its permissions here
    raise RuntimeError(f"permissions cover {sorted(PERMISSIONS)}, roles are {sorted(ROLES)}")
