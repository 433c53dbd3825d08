"""The peers' own venv (one `pip install` per peer, so one failure stops no other).

It lives under the bench cache (`data/bench/engine`, git-ignored) and is reused across runs. Our book needs
no build here: the package install compiles it (setup.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tooling.bench.engine_peers import PEERS, Peer


@dataclass
class Installed:
    """A peer's install outcome: its version, or why it is missing."""

    peer: Peer
    version: str | None
    error: str | None = None


def _venv(path: Path) -> Path:
    python = path / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(path)], check=True, capture_output=True, timeout=300)
    return python


def _versions(python: Path, peers: tuple[Peer, ...]) -> dict[str, str | None]:
    code = ("import importlib.metadata as m, json, sys\nout = {}\nfor name in sys.argv[1:]:\n"
            "    try: out[name] = m.version(name)\n    except m.PackageNotFoundError: out[name] = None\n"
            "print(json.dumps(out))")
    done = subprocess.run([str(python), "-c", code, *(p.pip for p in peers)], capture_output=True, text=True,
                          timeout=120, check=True)
    return json.loads(done.stdout)


def ensure_peers(cache: Path, install: bool, want: Callable[[str], bool] = lambda key: True,
                 timeout_s: float = 600.0) -> tuple[Path, list[Installed]]:
    """Create the peers' venv and install what is missing (when `install`) among the `want`ed peers; report
    every peer's state."""
    python = _venv(cache / "peers-venv")
    errors_file = cache / "peers-errors.json"
    errors: dict[str, str] = json.loads(errors_file.read_text()) if errors_file.exists() else {}
    versions = _versions(python, PEERS)
    out = []
    for peer in PEERS:
        version = versions.get(peer.pip)
        if version is None and install and want(peer.key):
            cmd = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", peer.pip, *peer.pip_args]
            try:
                done = subprocess.run(cmd, check=False, capture_output=True, text=True, timeout=timeout_s)
                if done.returncode == 0:
                    version = _versions(python, (peer,)).get(peer.pip)
                    errors.pop(peer.key, None)
                else:
                    lines = ([ln for ln in done.stderr.splitlines() if ln.startswith("ERROR")]
                             or done.stderr.splitlines())
                    errors[peer.key] = " / ".join(lines[-2:])[:300] or f"pip exited {done.returncode}"
            except subprocess.TimeoutExpired:
                errors[peer.key] = f"pip install timed out after {timeout_s:.0f} s"
        error = None if version else errors.get(peer.key, "not installed (run without --no-install)")
        out.append(Installed(peer, version, error))
    errors_file.write_text(json.dumps(errors, indent=1))
    return python, out
