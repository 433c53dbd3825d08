"""After `qt up`, nothing under the data dir grants group or other any permission bit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.tooling.harness import QtUp


def open_to_others(root: Path) -> list[str]:
    """Every path under `root` (itself included) whose mode grants group or other anything."""
    found = []
    for path in [root, *root.rglob("*")]:
        mode = path.lstat().st_mode
        if not stat.S_ISLNK(mode) and mode & 0o077:
            found.append(f"{path.relative_to(root)} {stat.filemode(mode)}")
    return found


@pytest.mark.slow
def test_data_dir_logs_secrets_sqlite_and_store_are_private(tmp_path: Path, platforms: list[QtUp]) -> None:
    data = tmp_path / "data"
    (data / "logs").mkdir(parents=True)
    old_log = data / "logs" / "old.log"  # left by an earlier run under a permissive umask
    old_log.write_text("earlier run\n")
    for path, mode in ((data, 0o755), (data / "logs", 0o755), (old_log, 0o644)):
        os.chmod(path, mode)
    platform = QtUp(data).start()
    platforms.append(platform)
    platform.wait_ready()
    deposit = platform.qt("wallet", "deposit", "alice", "USD", "5.00")  # SQLite writes its -wal now
    assert deposit.returncode == 0, deposit.stderr

    names = {path.name for path in data.rglob("*")}
    assert {"nats-server.log", "wallet-p0.log", "wallet-p1.log", "ops.nk", "jetstream"} <= names, names
    assert any(name.endswith("-wal") for name in names), names
    assert open_to_others(data) == []
    assert platform.interrupt() == 0
