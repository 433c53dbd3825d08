"""`python -m gateway`: the HTTP gateway in one uvicorn process (uvloop), configured from `QT_*`."""

from __future__ import annotations

import logging
import os
import sys

import uvicorn

from contracts.credentials import PRIVATE_UMASK
from gateway.app import create_app
from gateway.settings import Settings


def main() -> None:
    """Serve until SIGINT/SIGTERM (uvicorn drains open requests, then the NATS connection closes)."""
    os.umask(PRIVATE_UMASK)  # the key pair it generates under the data dir is private, like every node's files
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings.from_env()
    loop = "uvloop" if sys.platform != "win32" else "asyncio"
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, loop=loop, lifespan="on",
                proxy_headers=False, server_header=False, access_log=False, log_config=None,
                timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
