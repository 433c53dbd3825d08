"""Every node's `main` (`run_node`, what `python -m nodes.<name>` and `qt up` run) is on uvloop."""

from __future__ import annotations

import subprocess
import sys

from tests.procs import REPO

PROBE = """
import asyncio
from nodes.runtime.lifecycle import run_node

async def main(stop):
    print(type(asyncio.get_running_loop()).__module__)

run_node("probe", main)
"""


def test_a_node_runs_on_uvloop() -> None:
    ran = subprocess.run([sys.executable, "-c", PROBE], cwd=REPO, capture_output=True, text=True, timeout=60,
                         check=True)
    assert ran.stdout.split()[0] == "uvloop"

