"""Every subject, stream, consumer and bucket name of the mesh, and their configs, in one place."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Final

from contracts.instruments import INSTRUMENTS
from contracts.instruments import instrument as listed

# --- micro services (request-reply) -------------------------------------------------------------
# Each service's endpoints are a StrEnum: nodes register them and callers name them from here, so a
# renamed endpoint is one edit. `*_ENDPOINTS` is everything a node's micro INFO lists: its own
# endpoints plus the ones its runtime adds (metrics always; dlq_replay with a durable consumer;
# breakers with circuit breakers).
METRICS_ENDPOINT: Final = "metrics"
#: Answers with the node's circuit breaker states (nodes that call other services through breakers).
BREAKERS_ENDPOINT: Final = "breakers"
#: Replays parked messages of a node's durable consumers (`contracts.dlq`).
DLQ_REPLAY_ENDPOINT: Final = "dlq_replay"

WALLET_SERVICE: Final = "wallet"


class WalletEndpoint(StrEnum):
    """The wallet's endpoints: `wallet.<name>`."""

    DEPOSIT = "deposit"
    WITHDRAW = "withdraw"
    HOLD = "hold"
    RELEASE = "release"
    DEBIT = "debit"
    CREDIT = "credit"
    SETTLE = "settle"
    BATCH = "batch"
    BALANCE = "balance"
    EVENTS = "events"
    REBUILD = "rebuild"
    VERIFY = "verify"


WALLET_ENDPOINTS: Final = (*WalletEndpoint, METRICS_ENDPOINT)


#: Mesh-wide count of wallet partitions; every wallet process and every caller must agree on it.
WALLET_PARTITIONS_ENV: Final = "QT_WALLET_PARTITIONS"
#: Which partition one wallet process serves (0 .. partitions-1).
WALLET_PARTITION_ENV: Final = "QT_WALLET_PARTITION"
#: Key of a wallet's `$SRV.INFO` metadata that carries the partition count it was started with.
WALLET_PARTITIONS_METADATA: Final = "partitions"
_FNV32_OFFSET: Final = 0x811C9DC5
_FNV32_PRIME: Final = 0x01000193


def wallet_partition(account: str, partitions: int) -> int:
    """The partition that owns `account`: FNV-1a (32-bit) of its UTF-8 bytes, mod `partitions`.

    Stable across processes and versions (unlike `hash()`), so every caller routes an account alike.
    """
    if partitions < 1:
        raise ValueError(f"partitions must be >= 1, got {partitions}")
    h = _FNV32_OFFSET
    for byte in account.encode():
        h = ((h ^ byte) * _FNV32_PRIME) & 0xFFFFFFFF
    return h % partitions


def wallet_group(partition: int) -> str:
    """Subject prefix of one wallet partition's endpoints (also its lease key): `wallet.p<n>`."""
    return f"{WALLET_SERVICE}.p{partition}"


def wallet_subject(endpoint: str, partition: int) -> str:
    """Request subject of a wallet partition's endpoint, e.g. `wallet.p0.deposit`."""
    return f"{wallet_group(partition)}.{endpoint}"


def wallet_account_subject(endpoint: str, account: str, partitions: int) -> str:
    """Request subject of `endpoint` on the partition that owns `account`."""
    return wallet_subject(endpoint, wallet_partition(account, partitions))


MATCHING_SERVICE: Final = "matching"


class MatchingEndpoint(StrEnum):
    """The matching engine's endpoints: `matching.<instrument>.<name>` (status also `matching.status`)."""

    SUBMIT = "submit"
    CANCEL = "cancel"
    REPLACE = "replace"
    ORDER = "order"
    BOOK = "book"
    STATUS = "status"


#: Endpoints of one instrument, answered only by the engine that owns it: `matching.<instrument>.<endpoint>`.
MATCHING_INSTRUMENT_ENDPOINTS: Final = tuple(MatchingEndpoint)
#: Endpoints of one engine, each answered by every engine (callers gather the replies).
MATCHING_ENGINE_ENDPOINTS: Final = (MatchingEndpoint.STATUS, METRICS_ENDPOINT)


def matching_subject(instrument: str, endpoint: str) -> str:
    """Request subject of one instrument's matching endpoint, e.g. `matching.AAPL.submit`: only the
    engine that owns the instrument subscribes it, so a request reaches the owner or no one.

    An unlisted instrument is refused (`unknown_instrument`) before any subject is built from it.
    """
    return f"{MATCHING_SERVICE}.{listed(instrument).symbol}.{endpoint}"


def matching_engine_subject(endpoint: str) -> str:
    """Request subject every matching engine answers, e.g. `matching.status` (each engine's instruments)."""
    return f"{MATCHING_SERVICE}.{endpoint}"


CLEARING_SERVICE: Final = "clearing"


class ClearingEndpoint(StrEnum):
    """Clearing's endpoints: `clearing.<name>`."""

    PLACE_ORDER = "place_order"
    CANCEL_ORDER = "cancel_order"
    SAGA_GET = "saga_get"
    SAGA_LIST = "saga_list"


CLEARING_ENDPOINTS: Final = (*ClearingEndpoint, DLQ_REPLAY_ENDPOINT, METRICS_ENDPOINT, BREAKERS_ENDPOINT)
#: Clearing's one endpoint per instance (`clearing_owner_subject`): a saga as the instance driving it has it
#: in memory (its reply out, its final record still being written), for the other instances' reads.
SAGA_PEEK_ENDPOINT: Final = "saga_peek"


def clearing_owner_subject(owner: str) -> str:
    """`clearing.owner.<owner>.saga_peek`, with every character of the saga owner (`host:pid`) that a
    subject token cannot hold as `_`: reaches the one instance that drives sagas as `owner`."""
    token = "".join(c if c.isascii() and (c.isalnum() or c in "-_") else "_" for c in owner)
    return f"{CLEARING_SERVICE}.owner.{token}.{SAGA_PEEK_ENDPOINT}"


def clearing_subject(endpoint: str) -> str:
    """Request subject of a clearing endpoint, e.g. `clearing.place_order`."""
    return f"{CLEARING_SERVICE}.{endpoint}"


MARKETDATA_SERVICE: Final = "marketdata"


class MarketDataEndpoint(StrEnum):
    """Market data's endpoints: `marketdata.<name>`."""

    TICKER = "ticker"
    CANDLES = "candles"
    TRADES = "trades"


MARKETDATA_ENDPOINTS: Final = (*MarketDataEndpoint, METRICS_ENDPOINT)


def marketdata_subject(endpoint: str) -> str:
    """Request subject of a market data endpoint, e.g. `marketdata.ticker`."""
    return f"{MARKETDATA_SERVICE}.{endpoint}"


def readiness_probes(services: Iterable[str], partitions: int) -> dict[str, str]:
    """What answers when each service is ready, label -> subject (`qt up` and the gateway's `/ready`): its
    `$SRV.PING`; for the wallet each partition's own endpoint and for matching each instrument's (any
    instance answers a PING, so one partition or engine up would hide the other)."""
    probes: dict[str, str] = {}
    for service in services:
        # an empty body is refused with `bad_payload`: an answer from that partition or engine all the same
        if service == WALLET_SERVICE:
            probes |= {f"wallet p{p}": wallet_subject(WalletEndpoint.BALANCE, p) for p in range(partitions)}
        elif service == MATCHING_SERVICE:
            probes |= {f"{MATCHING_SERVICE} ({symbol})": matching_subject(symbol, MatchingEndpoint.STATUS)
                       for symbol in INSTRUMENTS}
        else:
            probes[service] = f"$SRV.PING.{service}"
    return probes


# --- streams ------------------------------------------------------------------------------------
WALLET_STREAM: Final = "WALLET"
WALLET_EVENTS_PREFIX: Final = "wallet.events"


def wallet_event_subject(account: str, asset: str) -> str:
    """Subject a wallet event is published on: `wallet.events.<account>.<asset>`."""
    return f"{WALLET_EVENTS_PREFIX}.{account}.{asset}"


def wallet_msg_id(ledger_id: str, seq: int) -> str:
    """Event id and JetStream msg-id of a wallet event: the ledger's id and the event's sequence.

    The ledger id is drawn when a wallet database is created, so a recreated database never
    reuses the ids (and msg-id dedup) of an older one.
    """
    return f"{ledger_id}-{seq}"


ORDERS_STREAM: Final = "ORDERS"
EXEC_STREAM: Final = "EXEC"


def orders_subject(instrument: str) -> str:
    """The matching journal of one instrument: `orders.<instrument>`."""
    return f"orders.{instrument}"


def exec_subject(instrument: str) -> str:
    """Engine output of one instrument: `exec.<instrument>.entry`, one message per journal entry (a
    msgpack list of its execution reports in the order the engine made them, `EXEC_REPORTS_MAX` at
    most: a longer entry goes on in the next message). One stored message per entry rather than per
    report: an entry of 36 orders cost 50 atomically batched messages, most of nats-server's CPU."""
    return f"exec.{instrument}.entry"


#: Execution reports one EXEC message carries at most (a fill is ~350 bytes packed: far under 1 MB).
EXEC_REPORTS_MAX: Final = 256


def exec_msg_id(instrument: str, orders_seq: int, n: int) -> str:
    """Deterministic msg-id of the n-th EXEC message of journal entry `orders_seq`: `<instrument>:<seq>:e<n>`
    (the `e` keeps it apart from `<instrument>:<seq>:<n>`, the n-th report when each was a message, so
    an entry cut short under that layout is published whole again rather than dropped as a duplicate)."""
    return f"{instrument}:{orders_seq}:e{n}"


def book_feed_subject(instrument: str) -> str:
    """Live L2 deltas (core NATS) of one instrument."""
    return f"md.book.{instrument}"


def trades_feed_subject(instrument: str) -> str:
    """Live trades and busts (core NATS, JSON) of one instrument: `md.trades.<instrument>`."""
    return f"md.trades.{instrument}"


def candles_feed_subject(instrument: str, tf: str) -> str:
    """Live changed candles (core NATS, JSON) of one instrument and timeframe: `md.candles.<instrument>.<tf>`."""
    return f"md.candles.{instrument}.{tf}"


def ticker_feed_subject(instrument: str) -> str:
    """Live ticker (core NATS, JSON) of one instrument: `md.ticker.<instrument>`."""
    return f"md.ticker.{instrument}"


TRADES_STREAM: Final = "TRADES"
DLQ_STREAM: Final = "DLQ"


def trades_subject(instrument: str) -> str:
    """Settled trades and busts of one instrument, published by clearing: `trades.<instrument>`."""
    return f"trades.{instrument}"


def dlq_subject(stream: str, consumer: str) -> str:
    """Where a message that exhausted `max_deliver` on `stream`/`consumer` is parked."""
    return f"dlq.{stream}.{consumer}"


#: Durable consumer of EXEC with which clearing releases holds of orders the engine cancelled.
CLEARING_EXEC_CONSUMER: Final = "clearing-exec"
#: Deliveries before a message is dead-lettered, and the pause before each redelivery.
MAX_DELIVER: Final = 5
REDELIVERY_BACKOFF_S: Final[tuple[float, ...]] = (0.2, 0.5, 1.0, 2.0)

#: Headers of a dead-lettered message: where it came from and why it failed.
DLQ_ORIGIN_STREAM: Final = "Qt-Origin-Stream"
DLQ_ORIGIN_SUBJECT: Final = "Qt-Origin-Subject"
DLQ_ORIGIN_SEQ: Final = "Qt-Origin-Seq"
DLQ_CONSUMER: Final = "Qt-Dlq-Consumer"
DLQ_SERVICE: Final = "Qt-Dlq-Service"
DLQ_LAST_ERROR: Final = "Qt-Last-Error"
DLQ_DELIVERIES: Final = "Qt-Deliveries"

#: Header carrying the publisher's lease token; readers drop messages from an older token.
FENCE_HEADER: Final = "Qt-Fence"

# --- buckets ------------------------------------------------------------------------------------
LEASES_BUCKET: Final = "leases"
SAGAS_BUCKET: Final = "sagas"
#: Saga ids by account and creation time: keys `<account>.<created ns, 20 digits>.<saga id>`.
SAGA_INDEX_BUCKET: Final = "saga_index"
#: Busted trade ids per order (maker and taker): key = order id, value = msgpack list of trade ids.
BUSTS_BUCKET: Final = "busts"
IDEMPOTENCY_BUCKET: Final = "idempotency"
#: Live clearing instances: key = instance id, value = msgpack {owner, at_ms}, rewritten every few seconds.
PRESENCE_BUCKET: Final = "clearing_presence"
SNAPSHOTS_OBJECTS: Final = "snapshots"


@dataclass(frozen=True)
class StreamSpec:
    """A stream the platform owns; created idempotently by `qt up` and by nodes at start."""

    name: str
    subjects: tuple[str, ...]
    description: str
    #: Seconds within which a repeated Nats-Msg-Id is dropped by the server.
    duplicate_window_s: float = 120.0
    max_age_s: float = 0.0
    max_msgs: int = -1


@dataclass(frozen=True)
class BucketSpec:
    """A KV bucket the platform owns."""

    name: str
    description: str
    ttl_s: float = 0.0
    history: int = 1


STREAMS: Final[tuple[StreamSpec, ...]] = (
    StreamSpec(
        name=WALLET_STREAM,
        subjects=(f"{WALLET_EVENTS_PREFIX}.>",),
        description="every wallet event, relayed from the SQLite outbox; msg-id = event id",
        # The SQLite event log is the system of record; this stream is its replicated feed. The
        # relay re-checks the stream tail on start, so the window only needs to cover a restart.
        duplicate_window_s=600.0,
    ),
    StreamSpec(
        name=ORDERS_STREAM,
        subjects=("orders.>",),
        description="the matching journal: new/cancel/replace commands in the order the engine applies them",
        duplicate_window_s=600.0,
    ),
    StreamSpec(
        name=EXEC_STREAM,
        subjects=("exec.>",),
        description=("engine output: each journal entry's reports as one list on exec.<instrument>.entry; "
                     "msg-id <instrument>:<orders seq>:e<n>"),
        duplicate_window_s=600.0,
    ),
    StreamSpec(
        name=TRADES_STREAM,
        subjects=("trades.>",),
        description="settled trades (msg-id = trade id) and busts (msg-id = bust:<trade id>), from clearing",
        duplicate_window_s=600.0,
    ),
    StreamSpec(
        name=DLQ_STREAM,
        subjects=("dlq.>",),
        description="messages that exhausted max_deliver: payload, origin stream/subject/seq, last error",
    ),
)

BUCKETS: Final[tuple[BucketSpec, ...]] = (
    BucketSpec(name=LEASES_BUCKET, description="partition ownership leases", ttl_s=10.0),
    BucketSpec(name=SAGAS_BUCKET, description="saga state, CAS on revision", history=5),
    BucketSpec(name=SAGA_INDEX_BUCKET, description="saga ids by account and time, newest first by key"),
    BucketSpec(name=BUSTS_BUCKET, description="busted trade ids per order, both sides"),
    BucketSpec(name=PRESENCE_BUCKET, description="live clearing instances (a peer scans sagas when one goes quiet)",
               ttl_s=60.0),
    BucketSpec(name=IDEMPOTENCY_BUCKET, description="gateway idempotency records", ttl_s=24 * 3600.0),
)

#: nkey users the server knows; each process connects as exactly one of them.
ROLES: Final[tuple[str, ...]] = ("wallet", "matching", "clearing", "market_data", "gateway", "ops")
