"""Gateway settings from the environment (`QT_*`), validated once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contracts.credentials import nkey_seed_path
from contracts.gateway import JWT_AUDIENCE, JWT_ISSUER
from contracts.subjects import WALLET_PARTITIONS_ENV

#: Most worker processes one gateway runs (the shared limits table has a connection-count column for each).
MAX_WORKERS = 16


@dataclass(frozen=True)
class Settings:
    """Everything the gateway reads; each field names its variable."""

    nats_url: str = "nats://127.0.0.1:4222"
    """`QT_NATS_URL`: comma-separated server URLs."""
    data_dir: Path = Path("data")
    """`QT_DATA_DIR`: where `secrets/gateway.nk` and the generated JWT key pair live."""
    nkey_seed: Path | None = None
    """`QT_NKEY_SEED`, else `<data_dir>/secrets/gateway.nk` when it exists; None = no NATS auth."""
    host: str = "127.0.0.1"
    """`QT_GATEWAY_HOST`."""
    port: int = 5121
    """`QT_HTTP_PORT` (DESIGN's name; `QT_GATEWAY_PORT` is read too, for tests that set only it)."""
    jwt_issuer: str = JWT_ISSUER
    """`QT_JWT_ISSUER`: the `iss` every token must carry."""
    jwt_audience: str = JWT_AUDIENCE
    """`QT_JWT_AUDIENCE`: the `aud` every token must carry."""
    jwt_public_key: Path | None = None
    """`QT_JWT_PUBLIC_KEY`: a configured Ed25519 public key (PEM); else a pair is generated in the data dir."""
    jwt_leeway_s: float = 60.0
    """`QT_JWT_LEEWAY_S`: clock skew tolerated on exp/nbf/iat."""
    rate_account: float = 200.0
    """`QT_RATE_ACCOUNT`: sustained requests per second per account (token bucket refill)."""
    burst_account: float = 400.0
    """`QT_BURST_ACCOUNT`: bucket size per account."""
    rate_ip: float = 1000.0
    """`QT_RATE_IP`: sustained requests per second per client IP."""
    burst_ip: float = 2000.0
    """`QT_BURST_IP`: bucket size per client IP."""
    ws_max_per_account: int = 32
    """`QT_WS_MAX_PER_ACCOUNT`: open WebSocket connections one account may hold (more close with 4429)."""
    ws_max_per_ip: int = 256
    """`QT_WS_MAX_PER_IP`: open WebSocket connections (authenticated or not) from one client IP."""
    workers: int = 1
    """`QT_GATEWAY_WORKERS`: processes serving the port (1 = one process; more = a supervisor and that many
    workers sharing every limit, see `gateway.workers`)."""
    idempotency_wait_s: float = 3.6
    """`QT_IDEMPOTENCY_WAIT_S`: how long a duplicate waits for the first request before 409."""
    idempotency_ttl_s: float = 24 * 3600.0
    """`QT_IDEMPOTENCY_TTL_S`: how long an Idempotency-Key record lives (the `idempotency` bucket's TTL)."""
    idempotency_record_delay_s: float = 0.0
    """`QT_IDEMPOTENCY_RECORD_DELAY_S` (a test hook): hold each order's record back after its response is
    sent, widening the window in which only this process knows the answer."""
    call_timeout_s: float = 10.0
    """`QT_GATEWAY_CALL_TIMEOUT_S`: reply timeout of a NATS call."""
    order_timeout_s: float = 30.0
    """`QT_GATEWAY_ORDER_TIMEOUT_S`: reply timeout of place/cancel (a saga may wait on a dependency)."""
    wallet_partitions: int = 1
    """`QT_WALLET_PARTITIONS`: how many wallet partitions the mesh runs (an account's requests go to its own)."""

    def __post_init__(self) -> None:
        if not self.nats_url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(f"QT_NATS_URL must be a nats:// URL, got {self.nats_url!r}")
        if not 0 < self.port < 65536:
            raise ValueError(f"QT_HTTP_PORT must be a TCP port, got {self.port}")
        for name in ("rate_account", "burst_account", "rate_ip", "burst_ip", "idempotency_wait_s",
                     "idempotency_ttl_s", "call_timeout_s", "order_timeout_s"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive")
        if self.idempotency_record_delay_s < 0:
            raise ValueError("QT_IDEMPOTENCY_RECORD_DELAY_S must not be negative")
        if self.ws_max_per_account < 1 or self.ws_max_per_ip < 1:
            raise ValueError("QT_WS_MAX_PER_ACCOUNT and QT_WS_MAX_PER_IP must be at least 1")
        if not 1 <= self.workers <= MAX_WORKERS:
            raise ValueError(f"QT_GATEWAY_WORKERS must be between 1 and {MAX_WORKERS}, got {self.workers}")
        if self.wallet_partitions < 1:
            raise ValueError(f"{WALLET_PARTITIONS_ENV} must be at least 1, got {self.wallet_partitions}")
        if self.burst_account < 1 or self.burst_ip < 1:
            raise ValueError("a burst below 1 would refuse every request")

    @classmethod
    def from_env(cls) -> Settings:
        """Read the `QT_*` variables, falling back to the documented defaults."""
        env = os.environ
        data_dir = Path(env.get("QT_DATA_DIR", "data")).resolve()
        seed = Path(env["QT_NKEY_SEED"]) if env.get("QT_NKEY_SEED") else nkey_seed_path(data_dir, "gateway")
        public = env.get("QT_JWT_PUBLIC_KEY")
        return cls(
            nats_url=env.get("QT_NATS_URL", cls.nats_url),
            data_dir=data_dir,
            nkey_seed=seed if seed.exists() else None,
            host=env.get("QT_GATEWAY_HOST", cls.host),
            port=int(env.get("QT_HTTP_PORT") or env.get("QT_GATEWAY_PORT") or cls.port),
            jwt_issuer=env.get("QT_JWT_ISSUER", cls.jwt_issuer),
            jwt_audience=env.get("QT_JWT_AUDIENCE", cls.jwt_audience),
            jwt_public_key=Path(public) if public else None,
            jwt_leeway_s=_number("QT_JWT_LEEWAY_S", cls.jwt_leeway_s),
            rate_account=_number("QT_RATE_ACCOUNT", cls.rate_account),
            burst_account=_number("QT_BURST_ACCOUNT", cls.burst_account),
            rate_ip=_number("QT_RATE_IP", cls.rate_ip),
            burst_ip=_number("QT_BURST_IP", cls.burst_ip),
            ws_max_per_account=int(_number("QT_WS_MAX_PER_ACCOUNT", cls.ws_max_per_account)),
            ws_max_per_ip=int(_number("QT_WS_MAX_PER_IP", cls.ws_max_per_ip)),
            workers=int(_number("QT_GATEWAY_WORKERS", cls.workers)),
            idempotency_wait_s=_number("QT_IDEMPOTENCY_WAIT_S", cls.idempotency_wait_s),
            idempotency_ttl_s=_number("QT_IDEMPOTENCY_TTL_S", cls.idempotency_ttl_s),
            idempotency_record_delay_s=_number("QT_IDEMPOTENCY_RECORD_DELAY_S", cls.idempotency_record_delay_s),
            call_timeout_s=_number("QT_GATEWAY_CALL_TIMEOUT_S", cls.call_timeout_s),
            order_timeout_s=_number("QT_GATEWAY_ORDER_TIMEOUT_S", cls.order_timeout_s),
            wallet_partitions=int(_number(WALLET_PARTITIONS_ENV, cls.wallet_partitions)),
        )

    def servers(self) -> list[str]:
        """The server list nats.py connects to."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


def _number(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return default if raw is None or raw == "" else float(raw)
