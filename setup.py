"""Build hook: compile the order book (nodes/matching/book.py) with mypyc; without a C compiler, ship it pure.

Everything else is declared in pyproject.toml. The compiled module sits next to book.py (one source) with a
`book.sha256` stamp of the source it was built from: `nodes/matching/book_build.py` loads the extension only
while the stamp matches, so an edited book.py is never shadowed by a stale build.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CCompilerError, ExecError, PlatformError

BOOK = "nodes/matching/book.py"
STAMP = "book.sha256"


class OptionalBuildExt(build_ext):
    """Build the compiled book when a compiler works; otherwise warn and install the pure module."""

    def build_extensions(self) -> None:
        built = []
        for ext in self.extensions:
            try:
                self.build_extension(ext)
            except (CCompilerError, ExecError, PlatformError, OSError) as exc:
                self.warn(f"quanttrade: {ext.name} not compiled ({exc}); the pure-Python book will be used")
                continue
            Path(self.get_ext_fullpath(ext.name)).with_name(STAMP).write_text(_digest())
            built.append(ext)
        self.extensions = built  # copy_extensions_to_source (editable installs) and outputs skip the failed ones

    def copy_extensions_to_source(self) -> None:
        super().copy_extensions_to_source()
        build_py = self.get_finalized_command("build_py")
        for ext in self.extensions:
            inplace, regular = self._get_inplace_equivalent(build_py, ext)
            self.copy_file(str(Path(regular).with_name(STAMP)), str(Path(inplace).with_name(STAMP)))

    def get_outputs(self) -> list[str]:
        outputs = super().get_outputs()
        return [*outputs, *(str(Path(p).with_name(STAMP)) for p in outputs if p.endswith(tuple(_suffixes())))]

    def get_output_mapping(self) -> dict[str, str]:
        mapping = super().get_output_mapping()
        extra = {str(Path(k).with_name(STAMP)): str(Path(v).with_name(STAMP))
                 for k, v in mapping.items() if k.endswith(tuple(_suffixes()))}
        return {**mapping, **extra}


def _digest() -> str:
    return hashlib.sha256(Path(BOOK).read_bytes()).hexdigest()


def _suffixes() -> list[str]:
    from importlib.machinery import EXTENSION_SUFFIXES

    return EXTENSION_SUFFIXES


def _extensions() -> list[Any]:
    """The mypyc extension of the book, or none (QT_NO_MYPYC=1, or mypyc missing)."""
    if os.environ.get("QT_NO_MYPYC") == "1":
        return []
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    return mypycify([BOOK], opt_level="3")


setup(ext_modules=_extensions(), cmdclass={"build_ext": OptionalBuildExt})
