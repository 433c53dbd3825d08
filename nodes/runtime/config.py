"""Node configuration from the environment (`QT_*`), validated once at start."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from contracts.credentials import nkey_seed_path


@dataclass(frozen=True)
class NodeConfig:
    """Settings every node reads; see DESIGN.md for the contract names."""

    role: str
    """Which nkey user this process is (`wallet`, `matching`, ...)."""
    nats_url: str = "nats://127.0.0.1:4222"
    """`QT_NATS_URL`: comma-separated server URLs."""
    data_dir: Path = Path("data")
    """`QT_DATA_DIR`: where SQLite files, snapshots and generated secrets live."""
    nkey_seed: Path | None = None
    """`QT_NKEY_SEED`, else `<data_dir>/secrets/<role>.nk` when it exists; None = no auth."""

    def __post_init__(self) -> None:
        if not self.nats_url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise ValueError(f"QT_NATS_URL must be a nats:// URL, got {self.nats_url!r}")

    @classmethod
    def from_env(cls, role: str) -> NodeConfig:
        """Read the `QT_*` variables, falling back to the documented defaults."""
        data_dir = Path(os.environ.get("QT_DATA_DIR", "data")).resolve()
        seed_env = os.environ.get("QT_NKEY_SEED")
        seed = Path(seed_env) if seed_env else nkey_seed_path(data_dir, role)
        return cls(
            role=role,
            nats_url=os.environ.get("QT_NATS_URL", "nats://127.0.0.1:4222"),
            data_dir=data_dir,
            nkey_seed=seed if seed.exists() else None,
        )

    def servers(self) -> list[str]:
        """The server list nats.py connects to."""
        return [url.strip() for url in self.nats_url.split(",") if url.strip()]


def env_int(name: str, default: int, *, minimum: int = 1) -> int:
    """An integer setting from the environment, refusing junk instead of guessing."""
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    value = int(raw)
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value
