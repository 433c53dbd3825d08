"""`python -m gateway`: the HTTP gateway (uvicorn on uvloop), configured from `QT_*`: one process, or a
supervisor with `QT_GATEWAY_WORKERS` worker processes behind one port (`gateway.workers`)."""

from __future__ import annotations

import os

from contracts.credentials import PRIVATE_UMASK
from gateway.redact import configure_logging
from gateway.settings import Settings
from gateway.workers import Supervisor, server
from mesh.heap import settle_heap
from mesh.tracing import setup_tracing


def main() -> None:
    """Serve until SIGINT/SIGTERM (uvicorn drains open requests, then the NATS connection closes)."""
    os.umask(PRIVATE_UMASK)  # the key pair it generates under the data dir is private, like every node's files
    configure_logging()
    settings = Settings.from_env()
    if settings.workers == 1:
        from gateway.app import create_app  # only a serving process loads the app; a supervisor stays small

        setup_tracing("gateway")  # the HTTP span of every request, exported with the nodes' when OTLP is configured
        app = create_app(settings)
        settle_heap()
        server(app, settings).run()
    else:
        Supervisor(settings).run()


if __name__ == "__main__":
    main()
