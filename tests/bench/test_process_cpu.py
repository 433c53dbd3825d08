"""CPU per process counts what it started (a node's or the gateway's workers), never the bench's own children."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from tooling.bench.mesh import cpu_seconds, descendants, process_children, tree_cpu_seconds

BURN = "import subprocess, sys; subprocess.run([sys.executable, '-c', 'while True: pass'])"


def test_descendants_walks_the_whole_tree_below_a_process() -> None:
    assert sorted(descendants(1, {1: [2, 3], 3: [4], 5: [6]})) == [2, 3, 4]


def test_a_process_is_charged_for_its_busy_worker_and_the_bench_only_for_itself() -> None:
    parent = subprocess.Popen([sys.executable, "-c", BURN])
    try:
        deadline = time.monotonic() + 20
        while tree_cpu_seconds({"node": parent.pid})["node"] - cpu_seconds(parent.pid) < 0.05:
            assert time.monotonic() < deadline, "the worker never showed up in its parent's CPU"
            time.sleep(0.05)
        # the busy worker is this process's descendant too, yet this process is charged for itself alone
        assert tree_cpu_seconds({"bench": os.getpid()})["bench"] <= cpu_seconds(os.getpid())
    finally:
        for pid in descendants(parent.pid, process_children()):
            os.kill(pid, signal.SIGKILL)
        parent.kill()
        parent.wait(timeout=10)
