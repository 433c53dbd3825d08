"""Children that die with their parent: if `qt up` (or a test run) is SIGKILLed, nothing it
started is left running."""

from __future__ import annotations

import ctypes
import signal
import sys

_PR_SET_PDEATHSIG = 1
# Resolved at import, so the code that runs between fork and exec is one C call, nothing more.
_prctl = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def die_with_parent() -> None:
    """`preexec_fn` for Popen: ask Linux to SIGTERM this child when its parent thread exits."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
