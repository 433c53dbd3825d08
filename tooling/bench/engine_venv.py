"""The peers' own venv (one `pip install` per peer, so one failure stops no other) and the mypyc build of our book.

Both live under the bench cache (`data/bench/engine`, git-ignored) and are reused across runs.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tooling.bench.engine_peers import PEERS, Peer

BOOK_SOURCE = Path(__file__).resolve().parents[2] / "nodes" / "matching" / "book.py"


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


def ensure_peers(cache: Path, install: bool, timeout_s: float = 600.0) -> tuple[Path, list[Installed]]:
    """Create the peers' venv and install what is missing (when `install`); report every peer's state."""
    python = _venv(cache / "peers-venv")
    errors_file = cache / "peers-errors.json"
    errors: dict[str, str] = json.loads(errors_file.read_text()) if errors_file.exists() else {}
    versions = _versions(python, PEERS)
    out = []
    for peer in PEERS:
        version = versions.get(peer.pip)
        if version is None and install:
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


def ensure_mypyc(cache: Path) -> tuple[Path | None, str]:
    """Compile a copy of nodes/matching/book.py with mypyc into `cache/mypyc` (rebuilt when the source
    changes); returns (directory holding the `book` extension, a status note)."""
    build = cache / "mypyc"
    digest = hashlib.sha256(BOOK_SOURCE.read_bytes()).hexdigest()[:16]
    stamp = build / "source.sha256"
    if stamp.exists() and stamp.read_text() == digest and any(build.glob("book.*.so")):
        return build, f"mypyc build of book.py {digest} (cached)"
    python = _venv(cache / "build-venv")
    try:
        if subprocess.run([str(python), "-c", "import mypyc"], check=False, capture_output=True,
                          timeout=60).returncode:
            subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", "mypy"],
                           check=True, capture_output=True, timeout=600)
        shutil.rmtree(build, ignore_errors=True)
        build.mkdir(parents=True)
        shutil.copy(BOOK_SOURCE, build / "book.py")
        done = subprocess.run([str(python.parent / "mypyc"), "book.py"], check=False, cwd=build,
                              capture_output=True, text=True, timeout=600)
        if done.returncode or not any(build.glob("book.*.so")):
            return None, "mypyc build failed: " + (done.stdout + done.stderr).strip().splitlines()[-1][:200]
        (build / "book.py").unlink()  # the extension alone, so the import cannot fall back silently
        stamp.write_text(digest)
        return build, f"mypyc build of book.py {digest}"
    except (subprocess.SubprocessError, OSError) as exc:
        return None, f"mypyc build failed: {exc}"[:200]
