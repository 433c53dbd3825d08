"""Which build of the order book this process runs: the mypyc-compiled `book.py`, or the same source as Python.

The package build (setup.py) compiles book.py next to itself with a `book.sha256` stamp of the source it
compiled. Importing `nodes.matching` selects once per process, so every `from nodes.matching.book import
Book` gets the same module: the compiled one unless QT_PURE_BOOK=1, it was not built (no C compiler at
install time), or book.py changed since the build (a stale extension would silently shadow the edit).
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import os
import sys
from dataclasses import dataclass
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path
from types import ModuleType
from typing import Literal

NAME = "nodes.matching.book"
SOURCE = Path(__file__).with_name("book.py")
STAMP = SOURCE.with_name("book.sha256")
PURE_ENV = "QT_PURE_BOOK"


@dataclass(frozen=True)
class BookBuild:
    """The selected build: `compiled` or `python`, and why (for logs and `matching.status`)."""

    kind: Literal["compiled", "python"]
    reason: str


def choose(source: Path, extension: Path | None, stamp: Path, pure: bool) -> BookBuild:
    """Decide between the extension and the source (pure function of the files and the switch)."""
    if pure:
        return BookBuild("python", f"{PURE_ENV}=1")
    if extension is None:
        return BookBuild("python", "not compiled (no C compiler at install time?)")
    built = stamp.read_text().strip() if stamp.exists() else None
    if built != hashlib.sha256(source.read_bytes()).hexdigest():
        return BookBuild("python", "stale: book.py changed since it was compiled (reinstall to rebuild)")
    return BookBuild("compiled", f"mypyc build {extension.name}")


def load_source(name: str = NAME) -> ModuleType:
    """Execute book.py as plain Python under `name`, registered as an import would (sys.modules, parent)."""
    spec = importlib.util.spec_from_file_location(name, SOURCE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    parent, _, child = name.rpartition(".")
    setattr(sys.modules[parent], child, module)
    return module


def _extension() -> Path | None:
    """The built extension next to book.py, if any (the import system would prefer it to the source)."""
    found = [SOURCE.with_name(f"book{suffix}") for suffix in EXTENSION_SUFFIXES]
    return next((p for p in found if p.exists()), None)


def select() -> BookBuild:
    """Import the chosen build as `nodes.matching.book` (the package does this once, on its own import)."""
    build = choose(SOURCE, _extension(), STAMP, os.environ.get(PURE_ENV) == "1")
    if NAME not in sys.modules:
        if build.kind == "python":
            load_source()
        else:
            importlib.import_module(NAME)
    return build


BUILD = select()
