"""How the CLI reaches the mesh: as the `ops` nkey user, from `QT_NATS_URL` / `QT_DATA_DIR`."""

from __future__ import annotations

import os
from pathlib import Path

import nats
from nats.aio.client import Client

from contracts.credentials import nkey_seed_path


def default_url() -> str:
    """`QT_NATS_URL`, else the local platform."""
    return os.environ.get("QT_NATS_URL", "nats://127.0.0.1:4222")


#: Where this package is installed from: the repository for an editable install.
INSTALL_ROOT = Path(__file__).resolve().parents[1]


def default_data_dir() -> Path:
    """`QT_DATA_DIR`, else `./data` when it exists, else the repository's (or install's) `data/`."""
    return find_data_dir(os.environ.get("QT_DATA_DIR"), Path.cwd(), INSTALL_ROOT)


def find_data_dir(configured: str | None, cwd: Path, install_root: Path) -> Path:
    """The platform's data dir as the CLI finds it; run outside the repository it still finds the
    platform that `qt up` started from the repository, rather than an empty `./data`."""
    if configured:
        return Path(configured)
    for candidate in (cwd / "data", install_root / "data"):
        if candidate.is_dir():
            return candidate
    return cwd / "data"


async def ops_connect(url: str | None = None, data_dir: Path | None = None, *, role: str = "ops") -> Client:
    """Connect as `role` using its generated seed when present (no retry: the CLI reports and exits)."""
    seed = nkey_seed_path((data_dir or default_data_dir()).resolve(), role)
    return await nats.connect(
        servers=[u.strip() for u in (url or default_url()).split(",")],
        name=f"qt-cli-{os.getpid()}",
        nkeys_seed=str(seed) if seed.exists() else None,
        connect_timeout=3,
        max_reconnect_attempts=1,
        reconnect_time_wait=0.2,
        allow_reconnect=False,
        error_cb=_ignore,  # the CLI reports a failed call in one line; no tracebacks from the client
    )


async def _ignore(_: Exception) -> None:
    return None
