"""One way for a test to wait for what the system does asynchronously: `eventually` (no bare sleeps)."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


def _truthy(result: object) -> bool:
    return bool(result)


async def eventually(probe: Callable[[], Awaitable[T] | T], ready: Callable[[T], bool] = _truthy, *,
                     timeout_s: float = 30.0, every_s: float = 0.05,
                     ignoring: tuple[type[BaseException], ...] = (), what: str = "the condition") -> T:
    """Call `probe()` (plain or async) until `ready(result)` holds, and return that result.

    A probe that raises one of `ignoring` is not ready yet; any other error fails at once. `timeout_s`
    only bounds a hung test: it fails naming `what` and the last result or error seen.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    last: object = None
    while True:
        try:
            result = probe()
            if inspect.isawaitable(result):
                result = await result
        except ignoring as exc:
            last = exc
        else:
            if ready(result):  # type: ignore[arg-type]  # awaited above when it was awaitable
                return result  # type: ignore[return-value]
            last = result
        if loop.time() >= deadline:
            raise AssertionError(f"{what} not reached in {timeout_s:g}s; last: {last!r}"[:2000])
        await asyncio.sleep(every_s)


def eventually_sync(probe: Callable[[], T], ready: Callable[[T], bool] = _truthy, *, timeout_s: float = 30.0,
                    every_s: float = 0.05, ignoring: tuple[type[BaseException], ...] = (),
                    what: str = "the condition") -> T:
    """`eventually` for tests that drive processes from plain (not async) code, e.g. the `qt` CLI."""
    deadline = time.monotonic() + timeout_s
    last: object = None
    while True:
        try:
            result = probe()
        except ignoring as exc:
            last = exc
        else:
            if ready(result):
                return result
            last = result
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not reached in {timeout_s:g}s; last: {last!r}"[:2000])
        time.sleep(every_s)
