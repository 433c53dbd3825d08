"""The one pid-alive check that lease and saga takeover share: only a dead local process is gone."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

from nodes.runtime.lease import process_gone


def test_a_process_that_exited_is_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()  # reaped: its pid no longer exists
    assert process_gone(socket.gethostname(), child.pid)


def test_a_running_process_is_not_gone() -> None:
    assert not process_gone(socket.gethostname(), os.getpid())


def test_a_process_on_another_host_is_never_judged_gone() -> None:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert not process_gone(f"not-{socket.gethostname()}", child.pid)
