"""The HTTP stack alone, as a peer for `qt bench gateway`: FastAPI on uvicorn with the gateway's own server options.

`python -m tooling.bench.gateway_peer PORT` serves `GET /health` with the gateway's body and nothing else:
no middleware, no NATS. What a request costs here is what the stack costs before the gateway adds anything.
"""

from __future__ import annotations

import sys

import uvicorn
from fastapi import FastAPI
from starlette.responses import Response

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/health")
async def health() -> Response:
    """The gateway's `/health` answer, without its middleware."""
    return Response(b'{"status":"ok"}', media_type="application/json")


def main() -> None:
    """Serve on 127.0.0.1:PORT with the options `python -m gateway` uses."""
    uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), loop="uvloop", http="httptools", lifespan="off",
                proxy_headers=False,
                server_header=False, access_log=False, log_config=None, timeout_graceful_shutdown=5)


if __name__ == "__main__":
    main()
