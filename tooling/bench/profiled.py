"""Run a module as `__main__` under cProfile on every thread, dumping merged stats at exit.

`python -m tooling.bench.profiled OUT.prof nodes.wallet`: cProfile alone sees only the main thread,
and the wallet's reads, rebuilds and checkpoints run on threads of their own, so each thread gets
its own profiler and all of them are merged into one pstats file when the module returns.
"""

from __future__ import annotations

import contextlib
import cProfile
import importlib
import pstats
import runpy
import sys
import threading
from pathlib import Path


def main() -> None:
    """Profile `module` with the remaining arguments as its argv."""
    out, module = Path(sys.argv[1]), sys.argv[2]
    sys.argv = [module, *sys.argv[3:]]
    thread_profiles: list[cProfile.Profile] = []
    original_run = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        profile = cProfile.Profile()
        thread_profiles.append(profile)
        profile.enable()
        try:
            original_run(self)
        finally:
            profile.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]
    with contextlib.suppress(ImportError):  # imports are start-up cost, not load: keep them out
        importlib.import_module(f"{module}.__main__")
    main_profile = cProfile.Profile()
    main_profile.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        main_profile.disable()
        stats = pstats.Stats(main_profile)
        for profile in list(thread_profiles):
            profile.snapshot_stats()
            stats.add(profile)
        stats.dump_stats(out)


if __name__ == "__main__":
    main()
