"""The request-reply peer: a trivial nats-py echo responder on uvloop (`python -m tooling.bench.echo`)."""

from __future__ import annotations

import asyncio
import signal
import sys

import nats
from nats.aio.msg import Msg


async def serve(url: str, seed: str, subject: str) -> None:
    """Answer every request on `subject` with its own payload until SIGTERM/SIGINT."""
    nc = await nats.connect(url, nkeys_seed=seed, name="qt-bench-echo")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    async def echo(msg: Msg) -> None:
        await msg.respond(msg.data)

    await nc.subscribe(subject, queue="echo", cb=echo)
    await nc.flush()
    await stop.wait()
    await nc.drain()


def main() -> None:
    """`python -m tooling.bench.echo URL SEED_FILE SUBJECT`."""
    url, seed, subject = sys.argv[1:4]
    try:
        import uvloop

        uvloop.run(serve(url, seed, subject))
    except ImportError:
        asyncio.run(serve(url, seed, subject))


if __name__ == "__main__":
    main()
