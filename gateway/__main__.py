"""`python -m gateway`: the HTTP gateway in one uvicorn process (uvloop), configured from `QT_*`."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from contracts.credentials import PRIVATE_UMASK
from contracts.tracing import setup_tracing
from gateway.app import create_app
from gateway.redact import RedactingFormatter
from gateway.settings import Settings
from gateway.ws import WS_MAX_SIZE


def main() -> None:
    """Serve until SIGINT/SIGTERM (uvicorn drains open requests, then the NATS connection closes)."""
    os.umask(PRIVATE_UMASK)  # the key pair it generates under the data dir is private, like every node's files
    handler = logging.StreamHandler(sys.stdout)
    # every line is redacted: uvicorn logs each WebSocket handshake's path, `?token=` included
    handler.setFormatter(RedactingFormatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
    logging.basicConfig(level=logging.INFO, handlers=[handler])
    settings = Settings.from_env()
    setup_tracing("gateway")  # the HTTP span of every request, exported with the nodes' when OTLP is configured
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop=loop, lifespan="on",
                proxy_headers=False, server_header=False, access_log=False, log_config=None,
                timeout_graceful_shutdown=5, ws_max_size=WS_MAX_SIZE)


if __name__ == "__main__":
    main()
