"""The data dir is the platform's alone: dirs 0700, files 0600, and a umask that keeps it that way."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Final

GROUP_OTHER: Final = 0o077


def make_private(root: Path) -> None:
    """Create `root` (0700) if missing and take every group/other bit off it and everything under it."""
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    _strip(root)
    for parent, dirs, files in os.walk(root):
        for name in (*dirs, *files):
            _strip(Path(parent) / name)


def _strip(path: Path) -> None:
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:  # gone while we walked: nothing left to protect
        return
    # A symlink's own mode means nothing and chmod would follow it out of the data dir.
    if not stat.S_ISLNK(mode) and mode & GROUP_OTHER:
        os.chmod(path, stat.S_IMODE(mode) & ~GROUP_OTHER)


def private_opener(path: str, flags: int) -> int:
    """`open(..., opener=private_opener)`: a new file is 0600 whatever the process umask."""
    return os.open(path, flags, 0o600)
