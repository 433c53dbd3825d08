"""The garbage collector's policy for a long-running process: most of what it allocates is freed by reference
counting, so generation-0 passes every 700 allocations mostly scan live objects for nothing."""

from __future__ import annotations

import gc
from typing import Final

#: Allocations between generation-0 passes (CPython's default is 700), then the older generations' ratios.
THRESHOLDS: Final = (50_000, 50, 1_000)


def settle_heap() -> None:
    """Collect once, freeze what is loaded so far (long-lived: never scanned again) and make passes rare.

    Measured: the gateway's CPU per HTTP order fell 16% (814 -> 685 µs, three alternating runs of
    `qt bench gateway` at 64 clients); the matching engine's full passes took 22-85 ms on a big book.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
