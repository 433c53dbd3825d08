"""Keep child processes running: restart with backoff, tag their output, stop them by PID."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.text import Text

from contracts.exits import MEANINGS
from mesh.backoff import RESTART, Backoff
from mesh.orphans import die_with_parent
from tooling.private import private_opener

PALETTE = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")
#: asyncio's default 64 KiB line limit would kill the pump on one long log line (a traceback).
LINE_LIMIT = 1 << 20


#: Restart delays: 0.5 s doubling up to 10 s; a child that ran 30 s starts over.


@dataclass(frozen=True)
class ChildSpec:
    """How to start one child: its name (the output tag), argv, environment and log file."""

    name: str
    argv: tuple[str, ...]
    env: dict[str, str]
    cwd: Path
    log_path: Path | None = None


@dataclass
class Child:
    """A supervised child and the process currently standing for it."""

    spec: ChildSpec
    style: str
    proc: asyncio.subprocess.Process | None = None
    starts: int = 0
    task: asyncio.Task[None] | None = field(default=None, repr=False)
    log: IO[bytes] | None = field(default=None, repr=False)


def say(console: Console, message: str) -> None:
    """A line of the supervisor's own, tagged `[qt]`."""
    console.print(Text.assemble(("[qt] ", "bold"), message), soft_wrap=True, highlight=False)


def describe_exit(code: int | None) -> str:
    """`code 1`, `code 75: lease lost`, `SIGKILL`, or `unknown` for a process that could not start."""
    if code is None:
        return "unknown"
    if code < 0:
        with contextlib.suppress(ValueError):
            return signal.Signals(-code).name
    meaning = MEANINGS.get(code)
    return f"code {code}" if meaning is None else f"code {code}: {meaning}"


class Supervisor:
    """Runs every child until `stop()`; never signals a process it did not start."""

    def __init__(self, specs: list[ChildSpec], console: Console, *, backoff: Backoff | None = None,
                 grace_s: float = 10.0) -> None:
        self.console = console
        self.backoff = backoff or RESTART
        self.grace_s = grace_s
        self.children = [Child(spec, PALETTE[i % len(PALETTE)]) for i, spec in enumerate(specs)]
        self._stopping = asyncio.Event()

    def start(self) -> None:
        """Spawn every child in the background."""
        for child in self.children:
            if child.spec.log_path is not None:
                child.spec.log_path.parent.mkdir(parents=True, exist_ok=True)
                child.log = open(child.spec.log_path, "ab", opener=private_opener)  # noqa: SIM115 - closed in stop()
            child.task = asyncio.create_task(self._keep(child), name=f"supervise-{child.spec.name}")

    def pids(self) -> dict[str, int | None]:
        """The PID currently running each child (None while it waits to restart)."""
        return {
            c.spec.name: c.proc.pid if c.proc is not None and c.proc.returncode is None else None
            for c in self.children
        }

    async def stop(self) -> None:
        """SIGTERM each child by PID, SIGKILL whichever is still there after the grace period."""
        self._stopping.set()
        tasks = [c.task for c in self.children if c.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for child in self.children:
            if child.log is not None:
                child.log.close()

    def say(self, message: str) -> None:
        """A supervisor line, tagged `[qt]`."""
        say(self.console, message)

    async def _keep(self, child: Child) -> None:
        delay: float | None = None
        loop = asyncio.get_running_loop()
        while not self._stopping.is_set():
            started = loop.time()
            code = await self._run_once(child)
            if self._stopping.is_set():
                self.say(f"{child.spec.name} stopped ({describe_exit(code)})")
                return
            uptime = loop.time() - started
            delay = self.backoff.next_delay(delay, uptime)
            self.say(f"{child.spec.name} exited ({describe_exit(code)}) after {uptime:.1f}s; "
                     f"restarting in {delay:g}s")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_once(self, child: Child) -> int | None:
        spec = child.spec
        try:
            # A session of its own keeps the terminal's Ctrl-C away from the child: the supervisor
            # decides the order of shutdown and sends SIGTERM itself.
            proc = await asyncio.create_subprocess_exec(
                *spec.argv, env=spec.env, cwd=spec.cwd, stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
                start_new_session=True, limit=LINE_LIMIT,
                preexec_fn=die_with_parent,
            )
        except OSError as exc:
            self.say(f"{spec.name} could not start: {exc}")
            return None
        child.proc = proc
        child.starts += 1
        self.say(f"{spec.name} started (pid {proc.pid})")
        assert proc.stdout is not None and proc.stderr is not None
        pumps = [asyncio.create_task(self._pump(child, proc.stdout)),
                 asyncio.create_task(self._pump(child, proc.stderr))]
        exited = asyncio.create_task(proc.wait())
        stopping = asyncio.create_task(self._stopping.wait())
        await asyncio.wait({exited, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
        if not exited.done():
            await self._terminate(child, proc, exited)
        # The pipes close with the process; a grandchild holding them must not hang us.
        await asyncio.wait(pumps, timeout=2.0)
        for pump in pumps:
            pump.cancel()
        return proc.returncode

    async def _terminate(self, child: Child, proc: asyncio.subprocess.Process,
                         exited: asyncio.Task[int]) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)  # this PID only, and only while it is unreaped
        try:
            await asyncio.wait_for(asyncio.shield(exited), self.grace_s)
        except TimeoutError:
            self.say(f"{child.spec.name} ignored SIGTERM for {self.grace_s:g}s; SIGKILL pid {proc.pid}")
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await exited

    async def _pump(self, child: Child, stream: asyncio.StreamReader) -> None:
        tag = f"[{child.spec.name}] "
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line beyond LINE_LIMIT: skip it rather than lose the child's output
                continue
            if not line:
                return
            if child.log is not None:
                child.log.write(line)
                child.log.flush()
            text = line.decode(errors="replace").rstrip("\n")
            self.console.print(Text.assemble((tag, child.style), text), soft_wrap=True, highlight=False)
