"""`python -m gateway.worker <fd> <slot> <run dir>`: one worker of a multi-worker gateway (started by
`gateway.workers.Supervisor`, never by hand), serving the listening socket it inherited."""

from __future__ import annotations

import os
import socket
import sys
from pathlib import Path

from contracts.credentials import PRIVATE_UMASK
from gateway.app import create_app
from gateway.redact import configure_logging
from gateway.settings import Settings
from gateway.shared import Shared
from gateway.workers import server
from mesh.heap import settle_heap
from mesh.tracing import setup_tracing


def main(argv: list[str]) -> None:
    """Serve the inherited socket with limits shared through the run dir, until SIGTERM."""
    os.umask(PRIVATE_UMASK)
    configure_logging()
    fd, slot, run_dir = int(argv[0]), int(argv[1]), Path(argv[2])
    settings = Settings.from_env()
    setup_tracing("gateway")
    app = create_app(settings, Shared.attach(run_dir, slot))
    settle_heap()
    server(app, settings).run(sockets=[socket.socket(fileno=fd)])


if __name__ == "__main__":
    main(sys.argv[1:])
