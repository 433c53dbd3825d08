"""The order book's two builds from one source: every book test runs against each."""

from __future__ import annotations

import os
import sys

import pytest

from nodes.matching import BOOK_BUILD, book_build


def in_ci() -> bool:
    """`.ci/run` exports CI=true: there a missing compiled build is a failure, not a skip (CI has gcc)."""
    return os.environ.get("CI", "").lower() in ("true", "1")


@pytest.fixture(scope="session", params=["compiled", "python"])
def book_cls(request: pytest.FixtureRequest) -> type:
    """`Book` from the mypyc build (what the node runs) or from book.py executed as plain Python."""
    if request.param == "compiled":
        if BOOK_BUILD.kind != "compiled":
            message = f"the compiled book is not loaded: {BOOK_BUILD.reason}"
            if in_ci():
                pytest.fail(message)
            pytest.skip(message)
        return sys.modules[book_build.NAME].Book
    if BOOK_BUILD.kind == "python":
        return sys.modules[book_build.NAME].Book
    return book_build.load_source("nodes.matching.book_py").Book
