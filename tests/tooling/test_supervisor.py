"""The supervisor with real child processes: backoff, output tags, restart, SIGTERM then SIGKILL."""

from __future__ import annotations

import io
import sys
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from mesh.backoff import RESTART, Backoff
from tests.polling import eventually
from tooling.supervisor import ChildSpec, Supervisor


def test_backoff_doubles_caps_and_resets_after_a_long_run() -> None:
    backoff = RESTART
    delays: list[float] = []
    delay: float | None = None
    for _ in range(7):
        delay = backoff.next_delay(delay, uptime_s=1.0)
        delays.append(delay)
    assert delays == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
    assert backoff.next_delay(10.0, uptime_s=30.0) == 0.5


def python_child(name: str, code: str, tmp_path: Path) -> ChildSpec:
    """A child running `python -c code`, logging to `<tmp>/<name>.log`."""
    return ChildSpec(name, (sys.executable, "-u", "-c", code), {}, tmp_path, tmp_path / f"{name}.log")


async def until(condition: Callable[[], bool], timeout_s: float = 20.0) -> None:
    """Poll `condition()` until it is true, failing after `timeout_s`."""
    await eventually(condition, timeout_s=timeout_s, every_s=0.01)


async def test_crashed_child_is_restarted_and_its_output_tagged(tmp_path: Path) -> None:
    screen = io.StringIO()
    spec = python_child("crashy", "print('hello from the child'); raise SystemExit(3)", tmp_path)
    supervisor = Supervisor([spec], Console(file=screen, width=200),
                            backoff=Backoff(initial_s=0.01, max_s=0.02))
    supervisor.start()
    try:
        await until(lambda: supervisor.children[0].starts >= 3 and "exited (code 3)" in screen.getvalue())
    finally:
        await supervisor.stop()
    text = screen.getvalue()
    assert "[crashy] hello from the child" in text
    assert "restarting in 0.01s" in text and "restarting in 0.02s" in text
    assert "hello from the child" in (tmp_path / "crashy.log").read_text()
    assert supervisor.pids() == {"crashy": None}


async def test_stop_sends_sigterm_then_sigkill_to_a_stubborn_child(tmp_path: Path) -> None:
    screen = io.StringIO()
    code = ("import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready'); "
            "time.sleep(60)")
    supervisor = Supervisor([python_child("stubborn", code, tmp_path)], Console(file=screen, width=200),
                            grace_s=0.5)
    supervisor.start()
    try:
        await until(lambda: "[stubborn] ready" in screen.getvalue())
        proc = supervisor.children[0].proc
        assert proc is not None
    finally:
        await supervisor.stop()
    assert proc.returncode == -9
    assert "ignored SIGTERM" in screen.getvalue() and "stubborn stopped (SIGKILL)" in screen.getvalue()


async def test_a_child_that_honours_sigterm_stops_cleanly(tmp_path: Path) -> None:
    screen = io.StringIO()
    code = ("import signal, sys, time\n"
            "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
            "print('ready')\n"
            "time.sleep(60)\n")
    supervisor = Supervisor([python_child("polite", code, tmp_path)], Console(file=screen, width=200))
    supervisor.start()
    try:
        await until(lambda: "[polite] ready" in screen.getvalue())
    finally:
        await supervisor.stop()
    assert "polite stopped (code 0)" in screen.getvalue()
    assert "SIGKILL" not in screen.getvalue()
