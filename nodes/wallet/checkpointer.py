"""Copies the wallet's WAL back into its database on a thread and a connection of their own.

The writer commits on the node's event loop; a checkpoint run by its own COMMIT (SQLite's
auto-checkpoint) held that loop for 10-13 ms every 10,000 pages. Here a PASSIVE checkpoint runs
beside it: it never blocks the writer, and the writer never waits for it. The writer's own
auto-checkpoint stays only as the bound on the WAL should this thread fall behind.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path
from typing import NamedTuple

from nodes.runtime.log import kv
from nodes.wallet.schema import open_db

log = logging.getLogger(__name__)

#: How often the thread checkpoints: often enough to stay under the writer's bound (a commit makes up
#: to ~60 pages: at 10,900 deposits/s the WAL peaked at ~7,000 pages), seldom enough that a hot page is
#: written once for many commits (every 0.25 s cost 5-7% more CPU per deposit at an in-process peak).
INTERVAL_S = 0.5
#: Quick re-runs after a checkpoint the writer outpaced, so a quiet moment lets the WAL restart.
CATCH_UP_RUNS = 8
CATCH_UP_PAUSE_S = 0.002


class Checkpoint(NamedTuple):
    """What `PRAGMA wal_checkpoint` answers: whether it was blocked, the WAL's frames, the frames copied back."""

    busy: bool
    wal_frames: int
    copied_frames: int

    @property
    def complete(self) -> bool:
        """Every frame the WAL had when the run began is in the database (the writer may have appended since)."""
        return not self.busy and self.wal_frames == self.copied_frames


class Checkpointer:
    """Runs PASSIVE checkpoints of one SQLite database every `interval_s` until `stop()`."""

    def __init__(self, path: Path, *, synchronous: str = "FULL", interval_s: float = INTERVAL_S) -> None:
        self.path = path
        self.synchronous = synchronous
        self.interval_s = interval_s
        self.runs = 0
        """Checkpoints run so far (catch-up runs included)."""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="wallet-checkpoint", daemon=True)
        self._conn: sqlite3.Connection | None = None

    def start(self) -> None:
        """Open the connection and start the thread."""
        # Its own connection: a checkpoint on the writer's would need the writer's turn.
        self._conn = open_db(self.path, synchronous=self.synchronous, schema=False)
        self._thread.start()

    def run_once(self) -> Checkpoint:
        """One PASSIVE checkpoint: copies what it can without waiting for any reader or writer."""
        assert self._conn is not None, "start() first"
        busy, wal_frames, copied = self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.runs += 1
        return Checkpoint(bool(busy), int(wal_frames), int(copied))

    def catch_up(self) -> bool:
        """Checkpoint until a run finds nothing new to copy (at most `CATCH_UP_RUNS` runs, a pause apart):
        then the writer's next transaction starts the WAL over. Whether it got there."""
        last = -1
        for _ in range(CATCH_UP_RUNS):
            result = self.run_once()
            # a run only copies what was there when it began: the writer may have appended since
            if result.complete and result.wal_frames == last:
                return True
            last = result.wal_frames if result.complete else -1
            if self._stop.wait(CATCH_UP_PAUSE_S):
                return False
        return False

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.catch_up()
            except sqlite3.Error as exc:  # the writer's own auto-checkpoint still bounds the WAL
                log.warning("wallet checkpoint failed", extra=kv(db=str(self.path), error=str(exc)))

    def stop(self) -> None:
        """Stop the thread (waiting out a checkpoint in progress) and close its connection."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
